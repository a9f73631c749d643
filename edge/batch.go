package edge

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wagglechat/waggle/auth"
)

// batcher makes calls for many items at once, group-commit style: an item
// arriving while a call is in flight joins the next call, and the caller
// that found no call in flight makes the calls until nobody waits. A quiet
// edge pays one call per item with no added delay; a reconnect storm pays
// a few large calls. Registry calls, route loads, bus subscriptions and
// repair reads all go through one.
type batcher[In, Out any] struct {
	max     int
	timeout time.Duration
	// call handles a batch and returns one result per item, in order.
	call func(context.Context, []In) ([]Out, error)

	mu      sync.Mutex
	pending []batchItem[In, Out]
	busy    bool
}

type batchItem[In, Out any] struct {
	in   In
	done chan batchResult[Out]
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
	item := batchItem[In, Out]{in: in, done: make(chan batchResult[Out], 1)}
	b.mu.Lock()
	b.pending = append(b.pending, item)
	if !b.busy {
		b.busy = true
		for len(b.pending) > 0 {
			n := min(len(b.pending), b.max)
			batch := b.pending[:n:n]
			b.pending = b.pending[n:]
			if len(b.pending) == 0 {
				b.pending = nil
			}
			b.mu.Unlock()
			b.flush(batch)
			b.mu.Lock()
		}
		b.busy = false
	}
	b.mu.Unlock()
	r := <-item.done
	return r.out, r.err
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
