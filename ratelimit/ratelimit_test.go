package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(2, 3) // 2 per second, bursts of 3
	l.now = func() time.Time { return clock }
	allowed := func(key string, n int) int {
		ok := 0
		for range n {
			if l.Allow(key) {
				ok++
			}
		}
		return ok
	}
	tests := []struct {
		name    string
		advance time.Duration
		key     string
		tries   int
		want    int
	}{
		{"a burst", 0, "a", 5, 3},
		{"another key has its own bucket", 0, "b", 1, 1},
		{"half a second refills one", 500 * time.Millisecond, "a", 3, 1},
		{"a long pause refills only up to the burst", time.Hour, "a", 10, 3},
	}
	for _, tt := range tests {
		clock = clock.Add(tt.advance)
		if got := allowed(tt.key, tt.tries); got != tt.want {
			t.Errorf("%s: %d of %d allowed, want %d", tt.name, got, tt.tries, tt.want)
		}
	}
}

func TestTakeSaysWhenToRetry(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(2, 1) // a token every 500 ms
	l.now = func() time.Time { return clock }
	tests := []struct {
		name    string
		advance time.Duration
		wantOK  bool
		wantIn  time.Duration
	}{
		{"the burst", 0, true, 0},
		{"empty", 0, false, 500 * time.Millisecond},
		{"a fifth refilled", 100 * time.Millisecond, false, 400 * time.Millisecond},
		{"refilled", 400 * time.Millisecond, true, 0},
	}
	for _, tt := range tests {
		clock = clock.Add(tt.advance)
		ok, in := l.Take("a")
		if ok != tt.wantOK || in != tt.wantIn {
			t.Errorf("%s: Take() = %v, %v; want %v, %v", tt.name, ok, in, tt.wantOK, tt.wantIn)
		}
	}
}

func TestRefilledBucketsAreDropped(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(1, 5)
	l.now = func() time.Time { return clock }
	for i := range 1000 {
		l.Allow(fmt.Sprint(i))
	}
	l.Allow("0") // used again: kept longer than the others
	clock = clock.Add(100 * time.Millisecond)
	l.Allow("new")
	if n := len(l.buckets); n != 1001 {
		t.Fatalf("%d buckets after 100 ms, want all 1,001: none has refilled", n)
	}
	clock = clock.Add(time.Hour)
	l.Allow("new")
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets after an hour, want 1: the others have refilled", n)
	}
}

// Spraying new keys must not make each call scan the keys in use: eviction
// looks at a bounded number of buckets per call, however many there are.
func TestEvictionWorkPerCallIsBounded(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(1.0/60, 10) // nothing refills within the test
	l.now = func() time.Time { return clock }
	tests := []struct{ keysInUse, calls int }{{10, 100}, {1_000, 100}, {101_000, 100}}
	for _, tt := range tests {
		for len(l.buckets) < tt.keysInUse {
			l.Allow(fmt.Sprint("warm", len(l.buckets)))
		}
		before := l.examined
		for i := range tt.calls {
			l.Allow(fmt.Sprint("spray", tt.keysInUse, "-", i))
		}
		if per := float64(l.examined-before) / float64(tt.calls); per > 2 {
			t.Errorf("with %d keys in use: %.0f buckets examined per new key, want at most 2", tt.keysInUse, per)
		}
	}
}

// BenchmarkAllowNewKeys is key spraying: every call a new key, with 100,000
// buckets in use that are not full yet.
func BenchmarkAllowNewKeys(b *testing.B) {
	clock := time.Unix(1000, 0)
	l := New(1.0/60, 10)
	l.now = func() time.Time { return clock }
	for i := range 100_000 {
		l.Allow(fmt.Sprint("warm", i))
	}
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprint("new", i)
	}
	b.ResetTimer()
	for i := range b.N {
		l.Allow(keys[i])
	}
}
