// Package ratelimit limits how often a key (a user, a username, an address)
// may do something, with one token bucket per key, in memory. Each process
// limits on its own: with N processes a key gets up to N times the rate,
// still a bound.
package ratelimit

import (
	"container/list"
	"sync"
	"time"
)

// Limiter allows Rate events per second per key, in bursts of up to Burst.
type Limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu sync.Mutex
	// buckets holds the elements of lru, whose front was used last. A bucket
	// that has refilled is dropped (a full bucket is the same as none), so
	// what is kept is the keys used within one refill time.
	buckets map[string]*list.Element
	lru     list.List
	// examined counts the buckets eviction looked at, for tests to show the
	// work per call does not grow with the keys in use.
	examined int
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time
}

// New returns a limiter of perSecond events per key with bursts of burst.
func New(perSecond float64, burst int) *Limiter {
	return &Limiter{rate: perSecond, burst: float64(burst), now: time.Now, buckets: map[string]*list.Element{}}
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
	l.dropFull(now)
	var b *bucket
	if e := l.buckets[key]; e != nil {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
	} else {
		b = &bucket{key: key, tokens: l.burst, at: now}
		l.buckets[key] = l.lru.PushFront(b)
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// dropFull drops the least recently used buckets while they have refilled.
// It stops at the first that has not: O(1) amortised, as each bucket is
// dropped once. One used less recently than a whole refill is always full,
// so none outlives that by more than a call.
func (l *Limiter) dropFull(now time.Time) {
	for e := l.lru.Back(); e != nil; e = l.lru.Back() {
		l.examined++
		b := e.Value.(*bucket)
		if b.tokens+now.Sub(b.at).Seconds()*l.rate < l.burst {
			return
		}
		l.lru.Remove(e)
		delete(l.buckets, b.key)
	}
}
