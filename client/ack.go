package client

import (
	"sync"
	"time"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// acker batches one session's acks (protocol.md §6). Reading an ack costs
// the edge about as much as writing a push, and acks are cumulative, so the
// session acks the highest push_id it holds once delay has passed since the
// oldest unacked push arrived, or at once when `every` pushes are unacked.
// The edge resends only after 10 s without an ack, so the delay causes no
// resends.
type acker struct {
	delay time.Duration
	every int
	send  func(*edgev1.ClientFrame) error

	mu      sync.Mutex // held while sending, so acks leave in order
	highest uint64     // the highest push_id applied or held
	unacked int        // pushes counted since the last ack
	timer   *time.Timer
	closed  bool // the stream is closing: its last ack has been sent
}

// add counts a push the client has applied or put on hold.
func (a *acker) add(pushID uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.highest = max(a.highest, pushID)
	a.unacked++
	if a.unacked >= a.every {
		a.ackLocked()
		return
	}
	if a.timer == nil {
		var t *time.Timer
		t = time.AfterFunc(a.delay, func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.timer == t { // not a timer that an ack by count replaced
				a.ackLocked()
			}
		})
		a.timer = t
	}
}

// close sends the last ack, if anything is unacked, and stops acking.
func (a *acker) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ackLocked()
	a.closed = true
}

// ackLocked acks everything counted so far. a.mu is held.
func (a *acker) ackLocked() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if a.unacked == 0 {
		return
	}
	a.unacked = 0
	// A failed send means the stream is gone; its pushes die with it.
	_ = a.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: a.highest}}})
}
