// Package ratelimit limits how often a key (a user, a username, an address)
// may do something, with one token bucket per key, in memory. Each process
// limits on its own: with N processes a key gets up to N times the rate,
// still a bound.
package ratelimit

import (
	"sync"
	"time"
)

// maxKeys bounds the buckets kept; past it, full buckets are dropped (a full
// bucket is the same as no bucket).
const maxKeys = 100_000

// Limiter allows Rate events per second per key, in bursts of up to Burst.
type Limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter of perSecond events per key with bursts of burst.
func New(perSecond float64, burst int) *Limiter {
	return &Limiter{rate: perSecond, burst: float64(burst), now: time.Now, buckets: map[string]*bucket{}}
}

// Allow takes one token of key's bucket, and reports whether there was one.
func (l *Limiter) Allow(key string) bool {
	ok, _ := l.Take(key)
	return ok
}

// Take is Allow that, when it refuses, also says how long until key's
// bucket holds a token again: when a retry can succeed.
func (l *Limiter) Take(key string) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxKeys {
			l.dropFull(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

func (l *Limiter) dropFull(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
