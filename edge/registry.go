package edge

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wagglechat/waggle/auth"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// maxRegistryBatch caps the sessions of one registry call, keeping requests
// well under any sane message size limit (a Session is ~150 bytes).
const maxRegistryBatch = 10000

// batcher makes registry calls for many sessions at once, group-commit
// style: a caller arriving while a call is in flight joins the next batch,
// and the caller that found no call in flight makes the calls until nobody
// waits. A quiet edge pays one call per session with no added delay; a
// reconnect storm pays a few large calls.
type batcher struct {
	max     int
	timeout time.Duration
	call    func(context.Context, []*presencev1.Session) error

	mu      sync.Mutex
	pending []batchItem
	busy    bool
}

type batchItem struct {
	session *presencev1.Session
	done    chan error
}

func newBatcher(max int, timeout time.Duration, call func(context.Context, []*presencev1.Session) error) *batcher {
	return &batcher{max: max, timeout: timeout, call: call}
}

// do returns once a call including s has been made, with that call's error.
func (b *batcher) do(s *presencev1.Session) error {
	item := batchItem{session: s, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, item)
	if b.busy {
		b.mu.Unlock()
		return <-item.done
	}
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
	b.mu.Unlock()
	return <-item.done
}

func (b *batcher) flush(batch []batchItem) {
	sessions := make([]*presencev1.Session, len(batch))
	for i, it := range batch {
		sessions[i] = it.session
	}
	// Not the caller's context: the batch serves other sessions too.
	ctx, cancel := context.WithTimeout(auth.WithInternal(context.Background()), b.timeout)
	defer cancel()
	err := b.call(ctx, sessions)
	if err != nil {
		err = fmt.Errorf("%d sessions: %w", len(sessions), err)
	}
	for _, it := range batch {
		it.done <- err
	}
}

// renewLoop extends the registry TTL of all of this edge's sessions every
// RenewInterval, so the sessions of an edge that dies expire on their own.
func (e *Edge) renewLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.RenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.renew(ctx)
		}
	}
}

func (e *Edge) renew(ctx context.Context) {
	e.registryOrder.Lock()
	defer e.registryOrder.Unlock()
	all := e.hub.all()
	sessions := make([]*presencev1.Session, len(all))
	for i, s := range all {
		sessions[i] = s.info
	}
	for len(sessions) > 0 {
		n := min(len(sessions), maxRegistryBatch)
		callCtx, cancel := context.WithTimeout(auth.WithInternal(ctx), e.cfg.CommandTimeout)
		res, err := e.deps.Registry.RenewSessions(callCtx, &presencev1.RenewSessionsRequest{
			EdgeId:   e.cfg.EdgeID,
			Sessions: sessions[:n],
		})
		cancel()
		switch {
		case err != nil:
			// The next tick retries; the TTL outlives a few missed renewals.
			e.log.Warn("edge: renew sessions", "sessions", n, "err", err)
		case res.GetRestored() > 0:
			e.log.Warn("edge: registry had lost sessions; restored", "restored", res.GetRestored())
		}
		sessions = sessions[n:]
	}
}
