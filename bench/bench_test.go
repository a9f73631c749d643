package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinOnePointSixPercent(t *testing.T) {
	var h Histogram
	rng := rand.New(rand.NewPCG(3, 4))
	var exact []time.Duration
	for range 100000 {
		// Spread over five orders of magnitude, 10 µs to 1 s.
		d := time.Duration(float64(10*time.Microsecond) * math.Pow(10, rng.Float64()*5))
		exact = append(exact, d)
		h.Record(d)
	}
	slices.Sort(exact)
	s := h.Summary(false)
	if s.Count != uint64(len(exact)) || s.Max != exact[len(exact)-1].Truncate(time.Microsecond) {
		t.Fatalf("count %d max %v, want %d and %v", s.Count, s.Max, len(exact), exact[len(exact)-1])
	}
	for _, q := range []struct {
		got  time.Duration
		want time.Duration
	}{{s.P50, exact[len(exact)/2]}, {s.P95, exact[len(exact)*95/100]}, {s.P99, exact[len(exact)*99/100]}} {
		if diff := float64(q.got-q.want) / float64(q.want); diff > 0.016 || diff < -0.016 {
			t.Errorf("quantile %v, exact %v: off by %.2f%%", q.got, q.want, 100*diff)
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	for _, us := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789} {
		i := bucketOf(us)
		if lo, hi := lowerBound(i), lowerBound(i+1); us < lo || us >= hi {
			t.Errorf("%d µs in bucket %d = [%d, %d)", us, i, lo, hi)
		}
	}
	for i := range numBuckets - 1 {
		if lowerBound(i) >= lowerBound(i+1) {
			t.Fatalf("bucket %d starts at %d, bucket %d at %d", i, lowerBound(i), i+1, lowerBound(i+1))
		}
	}
}

func TestHistogramResetAndConcurrency(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if s := h.Summary(true); s.Count != 8000 || s.Max != 7999*time.Microsecond {
		t.Fatalf("summary %+v", s)
	}
	if s := h.Summary(false); s.Count != 0 || s.Max != 0 {
		t.Fatalf("after reset: %+v", s)
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		shape       Shape
		users, size int
		want        string
		err         bool
	}{
		{ShapeDirect, 6, 0, "[[0 1] [2 3] [4 5]]", false},
		{ShapeDirect, 5, 0, "", true},
		{ShapeGroups, 7, 3, "[[0 1 2] [3 4 5 6]]", false}, // a lone user joins the last group
		{ShapeGroups, 8, 3, "[[0 1 2] [3 4 5] [6 7]]", false},
		{ShapeGroups, 4, 1, "", true},
		{ShapeLarge, 5, 3, "[[0 1 2]]", false},
		{ShapeLarge, 5, 6, "", true},
		{"ring", 5, 3, "", true},
	}
	for _, tt := range tests {
		got, err := plan(tt.shape, tt.users, tt.size)
		var ce ConfigError
		if tt.err {
			if !errors.As(err, &ce) {
				t.Errorf("plan(%s, %d, %d) = %v, %v; want a ConfigError", tt.shape, tt.users, tt.size, got, err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("plan(%s, %d, %d) = %v, %v; want %s", tt.shape, tt.users, tt.size, got, err, tt.want)
		}
	}
}

func TestSlotsCoverEverySessionOfEveryMember(t *testing.T) {
	r := &runner{cfg: Config{ConnsPerUser: 2}}
	slots := r.slots([][]int{{0, 1}, {1, 2}})
	seen := map[slot]bool{}
	for _, s := range slots {
		seen[s] = true
	}
	want := []slot{{0, 0}, {1, 0}, {2, 0}, {3, 0}, {2, 1}, {3, 1}, {4, 1}, {5, 1}}
	if len(slots) != len(want) || len(seen) != len(want) {
		t.Fatalf("slots %v, want each of %v once", slots, want)
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("missing slot %v", w)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	b := encodePayload(at, 4242, 100)
	sent, sender, ok := decodePayload(b)
	if len(b) != 100 || !ok || sent != at.UnixNano() || sender != 4242 {
		t.Fatalf("decoded %d, %d, %v from %d bytes", sent, sender, ok, len(b))
	}
	if _, _, ok := decodePayload(b[:11]); ok {
		t.Fatal("a short payload decoded")
	}
}

func TestProcParsing(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := []byte("1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0")
	d, err := cpuTime(stat)
	if err != nil || d != 3*time.Second {
		t.Fatalf("cpuTime = %v, %v; want 3s (250+50 ticks)", d, err)
	}
	if n, err := kilobytes("    2048 kB\n"); err != nil || n != 2<<20 {
		t.Fatalf("kilobytes = %d, %v", n, err)
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	WriteTable(&b, &Result{Shape: ShapeGroups, GroupSize: 10, Users: 20, ConnsPerUser: 1, StreamsPerConn: 1, Rate: 100,
		Duration: 10 * time.Second, Protocol: "connect", Edges: []string{"http://e"}, Acked: 1000, Expected: 9000, Delivered: 8991,
		Errors: map[string]int64{"unavailable": 2}, Latency: Summary{P50: 2 * time.Millisecond, P99: 9 * time.Millisecond}, Idle: 42})
	for _, want := range []string{"groups of 10", "8991 of 9000 expected (99.90%)", "p50 2.0ms", "p99 9.0ms", "unavailable: 2", "42% idle while measuring"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
