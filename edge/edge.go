// Package edge is Waggle's connection layer. It owns connections only: which
// user is on which stream, since when, and when it last heard from it. It
// keeps no global online state: it registers its sessions with the session
// registry and subscribes to its own bus channel for what concerns them.
//
// A session starts with a Hello (or, for Subscribe, a bearer token) answered
// by a Welcome; it is then in the edge's session map and in the registry.
// Commands are forwarded to the chat service in order, one session at a
// time; pushes from the bus are queued per session and written by one writer
// that merges whatever is pending into one Push frame. Pushes that carry
// state get a push_id and stay in the session's window until a cumulative
// Ack; they are resent after AckTimeout and the session is closed after
// MaxResends, so the client reconnects and syncs.
//
// The session core works on FrameConn and knows nothing of the RPC library;
// conn_connect.go adapts connect-go's streams.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/bus"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// Edge terminates client sessions. Create it with New, start its background
// work with Run, serve streams with Serve and ServeSubscribe (or NewHandler),
// and drain it with Shutdown.
type Edge struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	hub        *hub
	watchers   *watchers
	register   *batcher
	unregister *batcher
	// registryOrder keeps a renewal and an unregistration of the same
	// session from crossing: a renewal that landed after the session was
	// unregistered would bring it back for a TTL.
	registryOrder sync.Mutex
	deliveries    *deliveryBatcher

	// mu orders session starts against Shutdown: once draining is set no
	// session starts, so sessions.Wait sees every session.
	mu       sync.Mutex
	draining bool
	sessions sync.WaitGroup

	started  atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	runDone  chan struct{}
}

// New returns an Edge. log may be nil to discard logs.
func New(cfg Config, deps Deps, log *slog.Logger) (*Edge, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := deps.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Edge{
		cfg:        cfg,
		deps:       deps,
		log:        log.With("edge_id", cfg.EdgeID),
		hub:        newHub(),
		deliveries: newDeliveryBatcher(),
		stop:       make(chan struct{}),
		runDone:    make(chan struct{}),
	}
	e.watchers = newWatchers(e)
	e.register = newBatcher(maxRegistryBatch, cfg.CommandTimeout, func(ctx context.Context, ss []*presencev1.Session) error {
		_, err := deps.Registry.RegisterSessions(ctx, &presencev1.RegisterSessionsRequest{Sessions: ss})
		return err
	})
	e.unregister = newBatcher(maxRegistryBatch, cfg.CommandTimeout, func(ctx context.Context, ss []*presencev1.Session) error {
		e.registryOrder.Lock()
		defer e.registryOrder.Unlock()
		_, err := deps.Registry.UnregisterSessions(ctx, &presencev1.UnregisterSessionsRequest{Sessions: ss})
		return err
	})
	return e, nil
}

// ID is the edge's id (Config.EdgeID or its generated default).
func (e *Edge) ID() string { return e.cfg.EdgeID }

// Run subscribes to the edge's bus channel and runs the background loops
// (registry renewal, the timeout and resend sweeper, delivery reports) until
// ctx is done or Shutdown has drained the sessions. It returns an error only
// if the bus subscription fails. Call it once.
func (e *Edge) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("edge: Run called twice")
	}
	defer close(e.runDone)
	channel := bus.EdgeChannel(e.cfg.EdgeID)
	sub, err := e.deps.Bus.Subscribe(ctx, channel, e.route)
	if err != nil {
		return fmt.Errorf("edge: subscribe to %s: %w", channel, err)
	}
	defer func() {
		if err := sub.Close(); err != nil {
			e.log.Warn("edge: close bus subscription", "channel", channel, "err", err)
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	wg.Go(func() { e.renewLoop(ctx) })
	wg.Go(func() { e.sweepLoop(ctx) })
	wg.Go(func() { e.deliveryLoop(ctx) })
	wg.Wait()
	return nil
}

// RequestSync tells every session to sync now. Call it when the bus
// subscription was interrupted: pushes published meanwhile are lost, and a
// quiet conversation would otherwise show no gap to reveal it.
func (e *Edge) RequestSync() {
	for _, s := range e.hub.all() {
		// Spread over a second or two: every session syncing at once after
		// a Redis blip would be a thundering herd on the chat service.
		time.AfterFunc(time.Duration(rand.Int64N(int64(syncSpread))), func() {
			s.enqueueControl(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_SyncRequired{SyncRequired: &edgev1.SyncRequired{}}})
		})
	}
}

// syncSpread is the window RequestSync spreads its sync_required frames
// over.
const syncSpread = 2 * time.Second

// Shutdown drains the edge: new sessions are refused (unavailable), every
// session gets a Goaway and ends, is unregistered, and pending delivery
// reports are flushed; then Run returns. It returns ctx's error if that
// takes longer than ctx allows.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
	for _, s := range e.hub.all() {
		s.close(nil, "edge is shutting down")
	}
	drained := make(chan struct{})
	go func() {
		e.sessions.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		return fmt.Errorf("edge: shutdown: sessions still open: %w", ctx.Err())
	}
	e.stopOnce.Do(func() { close(e.stop) })
	if !e.started.Load() {
		e.flushDeliveries()
		return nil
	}
	select {
	case <-e.runDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("edge: shutdown: background loops: %w", ctx.Err())
	}
}

// beginSession counts a starting session, unless the edge is draining.
func (e *Edge) beginSession() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining {
		return connect.NewError(connect.CodeUnavailable, errors.New("edge is draining: connect to another edge"))
	}
	e.sessions.Add(1)
	return nil
}

func (e *Edge) isDraining() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.draining
}

// sweepLoop closes silent sessions and wakes writers with overdue pushes.
func (e *Edge) sweepLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, s := range e.hub.all() {
				s.sweep(now)
			}
		}
	}
}
