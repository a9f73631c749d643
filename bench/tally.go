package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

// window is what a fanout run counts: the messages of index from to to-1
// (those due in the measured window), received by until (Unix ns). Until
// it is set nothing counts. Indexes rather than send times decide, so a
// send due just before the window's end but issued a tick later still
// counts on both sides.
type window struct {
	from, to, until atomic.Int64
}

func (w *window) counts(index, now int64) bool {
	return index >= w.from.Load() && index < w.to.Load() && now <= w.until.Load()
}

// tally is one minimal client's account of what it received. Its reader
// goroutine fills it under mu, a frame at a time; the run reads it at the
// end.
type tally struct {
	mu        sync.Mutex
	keys      keySet
	delivered int64     // bench messages of the window, first receipts only
	latency   Histogram // of those
}

// add notes one received item: key identifies it for duplicates and gaps
// (a conversation seq, or a message index); a bench message also has its
// send time (0 for anything else) and index. mu must be held.
func (t *tally) add(w *window, now int64, key uint64, sent, index int64) {
	if t.keys.add(key) {
		return
	}
	if sent != 0 && w.counts(index, now) {
		t.delivered++
		t.latency.Record(time.Duration(now - sent))
	}
}

// keySet is a set of integer keys as a bitmap from its lowest key, which
// also counts repeats. The keys of one run are dense (a conversation's
// seqs, message indexes), so a bit each is plenty.
type keySet struct {
	base     uint64 // key of bit 0 of words[0]; a multiple of 64
	words    []uint64
	n        int64 // distinct keys
	min, max uint64
	dups     int64
}

// add inserts k and reports whether it was already there.
func (s *keySet) add(k uint64) bool {
	if s.n == 0 {
		s.base, s.min, s.max = k&^63, k, k
		s.words = append(s.words[:0], 0)
	}
	if k < s.base {
		grow := int((s.base - k&^63) / 64)
		s.words = append(make([]uint64, grow, grow+len(s.words)), s.words...)
		s.base = k &^ 63
	}
	i := int((k - s.base) / 64)
	for i >= len(s.words) {
		s.words = append(s.words, 0)
	}
	bit := uint64(1) << (k % 64)
	if s.words[i]&bit != 0 {
		s.dups++
		return true
	}
	s.words[i] |= bit
	s.n++
	s.min, s.max = min(s.min, k), max(s.max, k)
	return false
}

// gaps is how many keys between the lowest and the highest seen are
// missing.
func (s *keySet) gaps() int64 {
	if s.n == 0 {
		return 0
	}
	return int64(s.max-s.min+1) - s.n
}

// The ack policy: ack the highest push_id received once ackDelay has
// passed since the oldest unacked push arrived, or at once when ackEvery
// pushes are unacked.
const (
	ackDelay = 500 * time.Millisecond
	ackEvery = 64
)

// acker decides when a minimal client acks. It is a plain state machine
// fed with times, so the policy can be tested without a clock.
type acker struct {
	highest uint64    // highest push_id received
	pending int       // pushes received since the last ack
	oldest  time.Time // when the oldest of them arrived
}

// received notes push id arriving at now. It returns the push_id to ack
// at once (0: none), and whether this push is now the oldest unacked, so
// the caller arms a timer for ackDelay.
func (a *acker) received(id uint64, now time.Time) (ack uint64, arm bool) {
	a.highest = max(a.highest, id)
	a.pending++
	if a.pending >= ackEvery {
		a.pending = 0
		return a.highest, false
	}
	if a.pending == 1 {
		a.oldest = now
		return 0, true
	}
	return 0, false
}

// due is the timer firing at now: the push_id to ack, or, if the oldest
// unacked push is younger than ackDelay, how long to wait still. Neither
// means nothing is pending.
func (a *acker) due(now time.Time) (ack uint64, wait time.Duration) {
	if a.pending == 0 {
		return 0, 0
	}
	if w := a.oldest.Add(ackDelay).Sub(now); w > 0 {
		return 0, w
	}
	a.pending = 0
	return a.highest, 0
}
