package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bench"
)

// TestBenchAgainstAServer runs short waggle-bench (package bench) loads against a real
// server and checks the bench's own accounting: every acked send reaches
// every other session of its conversation, and the figures add up.
func TestBenchAgainstAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("registers users and sends for seconds")
	}
	c := newCluster(t)
	srv := c.start("serve", "serve")
	for _, tt := range []struct {
		name string
		cfg  bench.Config
	}{
		{"direct pairs over Connect", bench.Config{Shape: bench.ShapeDirect, Users: 6, Protocol: bench.ProtocolConnect}},
		{"groups over grpc-go, two devices per user, two sessions per connection", bench.Config{Shape: bench.ShapeGroups, Users: 6,
			GroupSize: 3, ConnsPerUser: 2, StreamsPerConn: 2, Protocol: bench.ProtocolGRPC}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Edges, cfg.PIDs = []string{srv.url()}, []int{srv.cmd.Process.Pid}
			cfg.Rate, cfg.Duration, cfg.Warmup = 50, 2*time.Second, 500*time.Millisecond
			var seconds int
			cfg.Progress = func(bench.Progress) { seconds++ }
			res, err := bench.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			sessions := cfg.Users * max(cfg.ConnsPerUser, 1)
			if res.Connected != sessions || res.HeldAtEnd != int64(sessions) || res.Reconnects != 0 {
				t.Errorf("sessions: %d connected, %d held, %d reconnects; want %d, %d, 0", res.Connected, res.HeldAtEnd, res.Reconnects, sessions, sessions)
			}
			if res.Acked < 80 || res.Acked > 120 || len(res.Errors) != 0 {
				t.Errorf("%d sends acked in 2 s at 50/s, errors %v", res.Acked, res.Errors)
			}
			if res.Expected == 0 || res.Delivered != res.Expected || res.Latency.Count != uint64(res.Delivered) {
				t.Errorf("delivered %d of %d expected, %d latencies", res.Delivered, res.Expected, res.Latency.Count)
			}
			if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P99 {
				t.Errorf("latency %+v", res.Latency)
			}
			if len(res.Servers) != 1 || res.Servers[0].RSS <= 0 || res.Servers[0].PeakRSS < res.Servers[0].RSS {
				t.Errorf("server stats %+v", res.Servers)
			}
			if res.Idle < 0 || res.Idle > 100 {
				t.Errorf("machine idle %v%%", res.Idle)
			}
			if seconds < 2 {
				t.Errorf("%d progress reports in 2.5 s", seconds)
			}
			t.Logf("acked %d, delivered %d/%d, latency p50 %v p99 %v", res.Acked, res.Delivered, res.Expected, res.Latency.P50, res.Latency.P99)
		})
	}
}

// TestBenchKeepsItsUsers runs the load generator three times on one
// --state file: the second run reuses the first's users (their tokens
// refreshed, not registered again), the third registers only the users
// the file lacks, and each run's sends are delivered.
func TestBenchKeepsItsUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("registers users and sends for seconds")
	}
	c := newCluster(t)
	srv := c.start("serve", "serve")
	state := filepath.Join(t.TempDir(), "state.json")
	type member struct {
		UserID       string `json:"user_id"`
		RefreshToken string `json:"refresh_token"`
	}
	read := func() []member {
		t.Helper()
		b, err := os.ReadFile(state)
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ Members []member }
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		return st.Members
	}
	var runs [][]member
	for _, users := range []int{4, 4, 6} {
		res, err := bench.Run(context.Background(), bench.Config{Edges: []string{srv.url()}, Shape: bench.ShapeDirect, Users: users,
			State: state, Rate: 40, Duration: time.Second})
		if err != nil {
			t.Fatalf("%d users: %v", users, err)
		}
		if res.Connected != users || res.Expected == 0 || res.Delivered != res.Expected || len(res.Errors) != 0 {
			t.Errorf("%d users: %d connected, delivered %d of %d, errors %v", users, res.Connected, res.Delivered, res.Expected, res.Errors)
		}
		runs = append(runs, read())
	}
	ids := func(ms []member) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.UserID)
		}
		return out
	}
	if len(runs[0]) != 4 || !slices.Equal(ids(runs[0]), ids(runs[1])) {
		t.Errorf("second run's users %v, want the first's %v", ids(runs[1]), ids(runs[0]))
	}
	for i := range runs[0] {
		if runs[0][i].RefreshToken == runs[1][i].RefreshToken {
			t.Errorf("user %d's refresh token was not rotated", i)
		}
	}
	if len(runs[2]) != 6 || !slices.Equal(ids(runs[2])[:4], ids(runs[1])) {
		t.Errorf("third run's users %v, want the second's %v and two more", ids(runs[2]), ids(runs[1]))
	}
}
