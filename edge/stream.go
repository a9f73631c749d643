package edge

import (
	"errors"
	"sync"
	"time"
)

// A stream is one positioned sequence as this edge follows it from the
// bus: a group's events, a user's own events, or a direct conversation's
// events on a user's channel. Every bus message carries its position (the
// seq), so the edge passes items on in order and exactly once, holds those
// that come before their predecessors (two chat processes publish in any
// order), and when a predecessor does not come, reads what is missing
// once, for all of its sessions, from the chat service.

const (
	// holdWait is how long an early item waits for its predecessors before
	// they are read back. Publishers of one stream reorder by
	// milliseconds at most; a longer hole is a lost message.
	holdWait = 50 * time.Millisecond
	// repairAttempts is how many failed reads a hole gets before the edge
	// gives up on it and tells the stream's sessions to sync instead.
	repairAttempts = 3
)

// order keeps a sequence's position: it passes items on in seq order and
// drops repeats.
type order[T any] struct {
	next uint64       // the seq expected next; 0 until known
	held map[uint64]T // items that came before their predecessors
}

// offer takes item at seq and returns the items now due, in order: none
// if it is early (it is held) or a repeat (it is dropped). The first item
// of a stream whose position is unknown sets it.
func (o *order[T]) offer(seq uint64, item T) []T {
	switch {
	case o.next == 0 || seq == o.next:
		o.next = seq + 1
		return o.release([]T{item})
	case seq < o.next:
		return nil
	}
	if o.held == nil {
		o.held = make(map[uint64]T)
	}
	if _, dup := o.held[seq]; !dup {
		o.held[seq] = item
	}
	return nil
}

func (o *order[T]) release(out []T) []T {
	for {
		h, ok := o.held[o.next]
		if !ok {
			return out
		}
		delete(o.held, o.next)
		out = append(out, h)
		o.next++
	}
}

// gap returns the missing seqs before the earliest held item.
func (o *order[T]) gap() (from, to uint64, ok bool) {
	if len(o.held) == 0 {
		return 0, 0, false
	}
	lowest := uint64(0)
	for seq := range o.held {
		if lowest == 0 || seq < lowest {
			lowest = seq
		}
	}
	return o.next, lowest - 1, true
}

// skip gives up on the missing seqs before the earliest held item and
// returns the items then due.
func (o *order[T]) skip() []T {
	if _, to, ok := o.gap(); ok {
		o.next = to + 1
		return o.release(nil)
	}
	return nil
}

// learn makes next the position unless a later one is known: what came
// before it is covered otherwise (the sessions' own sync).
func (o *order[T]) learn(next uint64) []T {
	if next <= o.next {
		return nil
	}
	o.next = next
	for seq := range o.held {
		if seq < next {
			delete(o.held, seq)
		}
	}
	return o.release(nil)
}

// stream is an order plus the repairs of its holes. Its owner's mutex
// guards it; every method but the timer and read callbacks is called with
// it held.
type stream[T any] struct {
	mu    *sync.Mutex
	order order[T]
	hooks streamHooks[T]

	timer    *time.Timer
	reading  bool
	catchUp  bool // read everything after the position, hole or not
	failures int
}

// streamHooks are what a stream's owner does with it.
type streamHooks[T any] struct {
	// seq is an item's position.
	seq func(T) uint64
	// apply delivers items in order.
	apply func([]T)
	// read asks the chat service for from..to (0: to the latest) and
	// calls done, without the lock held, with the items read and whether
	// more are left.
	read func(from, to uint64, done func(items []T, more bool, err error))
	// giveUp tells the stream's sessions to sync: a hole could not be read.
	giveUp func()
	// closed reports that the owner is gone.
	closed func() bool
}

func newStream[T any](mu *sync.Mutex, hooks streamHooks[T]) *stream[T] {
	return &stream[T]{mu: mu, hooks: hooks}
}

// offer orders item and delivers what is due; a hole left behind is
// repaired after holdWait unless its predecessors arrive first.
func (s *stream[T]) offer(item T) {
	if ready := s.order.offer(s.hooks.seq(item), item); len(ready) > 0 {
		s.hooks.apply(ready)
	}
	if _, _, hole := s.order.gap(); hole {
		s.schedule(holdWait)
	}
}

// learn sets the position from a route load (see order.learn).
func (s *stream[T]) learn(next uint64) {
	if ready := s.order.learn(next); len(ready) > 0 {
		s.hooks.apply(ready)
	}
}

// requestCatchUp reads everything after the position now: after a new
// subscription or a lost bus connection, published messages may be
// missing with no later one to show the hole.
func (s *stream[T]) requestCatchUp() {
	if s.order.next == 0 {
		return // nothing delivered yet, so nothing to follow on from
	}
	s.catchUp = true
	s.schedule(0)
}

func (s *stream[T]) schedule(after time.Duration) {
	if s.reading || s.timer != nil {
		return
	}
	s.timer = time.AfterFunc(after, s.repair)
}

var errHoleUnread = errors.New("edge: the read of a hole brought nothing")

func (s *stream[T]) repair() {
	s.mu.Lock()
	s.timer = nil
	if s.reading || s.hooks.closed() {
		s.mu.Unlock()
		return
	}
	from, to, hole := s.order.gap()
	if !hole {
		if !s.catchUp {
			s.mu.Unlock()
			return
		}
		from, to = s.order.next, 0
	}
	catchUp := s.catchUp
	s.catchUp = false
	s.reading = true
	s.mu.Unlock()
	s.hooks.read(from, to, func(items []T, more bool, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.reading = false
		if s.hooks.closed() {
			return
		}
		if err == nil && hole && len(items) == 0 {
			err = errHoleUnread
		}
		if err != nil {
			s.failures++
			if s.failures < repairAttempts {
				s.catchUp = s.catchUp || catchUp
				s.schedule(time.Duration(s.failures) * 200 * time.Millisecond)
				return
			}
			s.failures = 0
			s.hooks.giveUp()
			if ready := s.order.skip(); len(ready) > 0 {
				s.hooks.apply(ready)
			}
			return
		}
		s.failures = 0
		for _, it := range items {
			s.offer(it)
		}
		if more {
			s.catchUp = s.catchUp || catchUp
			s.schedule(0)
		}
	})
}
