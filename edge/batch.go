package edge

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wagglechat/waggle/auth"
)

// batcher makes calls for many items at once, group-commit style: an item
// arriving while a call is in flight joins the next call. The caller that
// found no call in flight leads: it makes the calls for what is pending
// then, and hands the lead to the caller of the first item that arrived
// meanwhile, so under churn no caller keeps flushing others' items (its
// own Welcome, and Shutdown, waiting). A quiet edge pays one call per item
// with no added delay; a reconnect storm pays a few large calls. Registry
// calls, route loads, bus subscriptions and repair reads all go through one.
type batcher[In, Out any] struct {
	max     int
	timeout time.Duration
	// call handles a batch and returns one result per item, in order.
	call func(context.Context, []In) ([]Out, error)

	mu      sync.Mutex
	pending []batchItem[In, Out]
	busy    bool // a caller leads
}

type batchItem[In, Out any] struct {
	in   In
	done chan batchResult[Out]
	lead chan struct{} // signalled when this item's caller is to lead
}

type batchResult[Out any] struct {
	out Out
	err error
}

func newBatcher[In, Out any](max int, timeout time.Duration, call func(context.Context, []In) ([]Out, error)) *batcher[In, Out] {
	return &batcher[In, Out]{max: max, timeout: timeout, call: call}
}

// do returns once a call including in has been made, with in's result.
func (b *batcher[In, Out]) do(in In) (Out, error) {
	item := batchItem[In, Out]{in: in, done: make(chan batchResult[Out], 1), lead: make(chan struct{}, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, item)
	leads := !b.busy
	b.busy = true
	b.mu.Unlock()
	if leads {
		b.leadOnce()
	}
	for {
		select {
		case r := <-item.done:
			return r.out, r.err
		case <-item.lead:
			b.leadOnce()
		}
	}
}

// leadOnce makes the calls for the items pending now, max at a time, then
// hands the lead on (or ends it if nothing is pending).
func (b *batcher[In, Out]) leadOnce() {
	b.mu.Lock()
	batch := b.pending
	b.pending = nil
	b.mu.Unlock()
	for len(batch) > 0 {
		n := min(len(batch), b.max)
		b.flush(batch[:n:n])
		batch = batch[n:]
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		b.busy = false
		return
	}
	b.pending[0].lead <- struct{}{}
}

func (b *batcher[In, Out]) flush(batch []batchItem[In, Out]) {
	ins := make([]In, len(batch))
	for i, it := range batch {
		ins[i] = it.in
	}
	// Not the caller's context: the batch serves other callers too.
	ctx, cancel := context.WithTimeout(auth.WithInternal(context.Background()), b.timeout)
	defer cancel()
	outs, err := b.call(ctx, ins)
	if err == nil && len(outs) != len(batch) {
		err = fmt.Errorf("edge: %d results for %d items", len(outs), len(batch))
	}
	if err != nil {
		err = fmt.Errorf("%d items: %w", len(batch), err)
	}
	for i, it := range batch {
		r := batchResult[Out]{err: err}
		if err == nil {
			r.out = outs[i]
		}
		it.done <- r
	}
}
