package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bench/floor"
)

// startFloor serves an in-process floor on a free port and returns its
// base URL.
func startFloor(t *testing.T, transport string) (string, *floor.Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := floor.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l, transport) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("floor: %v", err)
		}
	})
	return "http://" + l.Addr().String(), srv
}

// TestFanoutAgainstAFloor runs whole fanout runs against in-process floor
// servers and checks the accounting: every message sent in the window
// reaches every session once, in time, and the figures add up.
func TestFanoutAgainstAFloor(t *testing.T) {
	for _, tr := range []string{floor.TransportGRPC, floor.TransportConnect} {
		t.Run(tr, func(t *testing.T) {
			url, _ := startFloor(t, tr)
			var seconds int
			res, err := RunFanout(context.Background(), FanoutConfig{Target: TargetFloor, Protocol: tr, Edges: []string{url},
				Members: 8, Rate: 100, Warmup: 300 * time.Millisecond, Duration: time.Second, Drain: 300 * time.Millisecond,
				IdleSample: 100 * time.Millisecond, PIDs: []int{os.Getpid()}, Progress: func(Progress) { seconds++ }})
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != 8 || res.ConnectFailed != 0 || len(res.Lost) != 0 {
				t.Fatalf("sessions: %d up, %d failed (%s), lost %v", res.Connected, res.ConnectFailed, res.ConnectError, res.Lost)
			}
			if res.SendsDone < 95 || res.SendsDone > 101 || len(res.SendErrors) != 0 || res.Issued < res.SendsDone+25 {
				t.Errorf("%d sends done of %d issued in 1.3 s at 100/s, errors %v", res.SendsDone, res.Issued, res.SendErrors)
			}
			if res.Expected != 8*res.SendsDone || res.Delivered != res.Expected || res.Percent != 100 || res.Latency.Count != uint64(res.Delivered) {
				t.Errorf("delivered %d of %d (%.1f%%), %d latencies", res.Delivered, res.Expected, res.Percent, res.Latency.Count)
			}
			if res.Duplicates != 0 || res.Gaps != 0 {
				t.Errorf("%d duplicates, %d gaps", res.Duplicates, res.Gaps)
			}
			// Bounds loose enough for a machine busy with other tests.
			if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max > 10*time.Second {
				t.Errorf("latency %+v", res.Latency)
			}
			if res.ServerCPU <= 0 || res.PerServerCPU <= 0 || res.Window < 1300*time.Millisecond || len(res.Servers) != 1 {
				t.Errorf("CPU %v over %v, %.0f per CPU-second, servers %+v", res.ServerCPU, res.Window, res.PerServerCPU, res.Servers)
			}
			if res.IdleBefore < 0 || res.IdleBefore > 100 { // 0 % is a busy machine; -1 would be unmeasured
				t.Errorf("idle %.1f%%", res.IdleBefore)
			}
			if seconds < 1 {
				t.Errorf("%d progress reports", seconds)
			}
		})
	}
}

func TestIdleAgainstAFloor(t *testing.T) {
	url, srv := startFloor(t, floor.TransportGRPC)
	res, err := RunIdle(context.Background(), IdleConfig{Target: TargetFloor, Protocol: ProtocolGRPC, Edges: []string{url}, Sessions: 20,
		Settle: 100 * time.Millisecond, SettleMax: 2 * time.Second, PIDs: []int{os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 20 || res.RSSBefore <= 0 || res.RSSAfter <= 0 {
		t.Fatalf("idle %+v", res)
	}
	// RunIdle closes its sessions before it returns.
	for deadline := time.Now().Add(5 * time.Second); srv.Streams() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.Streams(); n != 0 {
		t.Fatalf("%d streams left open", n)
	}
}

// TestIdleChild speaks a child process's protocol to ServeIdleChild: a
// brief on stdin, a ready line on stdout, the end when stdin closes.
func TestIdleChild(t *testing.T) {
	url, srv := startFloor(t, floor.TransportConnect)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeIdleChild(context.Background(), inR, outW) }()
	spec := childSpec{Plan: dialPlan{Target: TargetFloor, Protocol: ProtocolConnect, Edges: []string{url}}, From: 10, To: 15, Parallel: 2}
	if err := json.NewEncoder(inW).Encode(spec); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(outR).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ready childReady
	if err := json.Unmarshal(line, &ready); err != nil || ready.Connected != 5 || ready.Failed != 0 {
		t.Fatalf("ready %s: %+v %v", line, ready, err)
	}
	if n := srv.Streams(); n != 5 {
		t.Fatalf("%d streams on the floor, want 5", n)
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the child did not end when its stdin closed")
	}
}
