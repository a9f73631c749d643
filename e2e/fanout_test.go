package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bench"
)

// TestFanoutAgainstAServer runs waggle-bench fanout runs (package bench)
// against a real server: the first registers the group and keeps it in a
// state file, the second only refreshes tokens from it, over the other
// listener. Every message reaches every member's session, the sender's
// own included (unary sends carry no session id).
func TestFanoutAgainstAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("registers users and sends for seconds")
	}
	c := newCluster(t)
	grpcAddr := freeAddr(t)
	srv := c.start("serve", "serve", "--edge-grpc-addr", grpcAddr)
	state := filepath.Join(t.TempDir(), "state.json")
	for _, tt := range []struct {
		protocol, edge string
	}{
		{bench.ProtocolGRPC, "http://" + grpcAddr},
		{bench.ProtocolConnect, srv.url()},
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			res, err := bench.RunFanout(context.Background(), bench.FanoutConfig{Target: bench.TargetWaggle, Protocol: tt.protocol,
				Edges: []string{tt.edge}, API: srv.url(), Members: 20, Rate: 20, Duration: time.Second, Drain: time.Second,
				IdleSample: -1, State: state, PIDs: []int{srv.cmd.Process.Pid}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != 20 || len(res.Lost) != 0 {
				t.Fatalf("%d sessions up (%s), lost %v", res.Connected, res.ConnectError, res.Lost)
			}
			if res.SendsDone < 18 || len(res.SendErrors) != 0 || res.Expected != 20*res.SendsDone {
				t.Errorf("%d sends done, errors %v, %d expected", res.SendsDone, res.SendErrors, res.Expected)
			}
			if res.Delivered != res.Expected || res.Duplicates != 0 || res.Gaps != 0 {
				t.Errorf("delivered %d of %d, %d duplicates, %d gaps", res.Delivered, res.Expected, res.Duplicates, res.Gaps)
			}
			if res.ServerCPU <= 0 || res.PerTotalCPU <= 0 || res.PerTotalCPU > res.PerServerCPU {
				t.Errorf("CPU: server %v, per CPU-second %.0f (server) %.0f (with redis and postgres)", res.ServerCPU, res.PerServerCPU, res.PerTotalCPU)
			}
			t.Logf("set-up %v, delivered %d/%d, p50 %v p99 %v", res.SetupTime, res.Delivered, res.Expected, res.Latency.P50, res.Latency.P99)
		})
	}
}
