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

func TestLimiterStaysBounded(t *testing.T) {
	clock := time.Unix(1000, 0)
	l := New(1, 1)
	l.now = func() time.Time { return clock }
	for i := range maxKeys + 10 {
		l.Allow(fmt.Sprint(i))
		if i == maxKeys/2 {
			clock = clock.Add(time.Hour) // the first half refill: droppable
		}
	}
	if n := len(l.buckets); n > maxKeys {
		t.Fatalf("%d buckets kept, at most %d", n, maxKeys)
	}
}
