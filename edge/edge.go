// Package edge is Waggle's connection layer. It owns connections only: which
// user is on which stream, since when, and when it last heard from it. It
// keeps no global online state: it registers its sessions with the session
// registry and subscribes to the bus topics they need (each user's own
// channel, and the channel of each group its users are in), deciding
// locally which session gets each event.
//
// A session starts with a Hello (or, for Subscribe, a bearer token) answered
// by a Welcome; it is then in the edge's session map and in the registry,
// and its user's route is loaded (routes.go, topics.go). Commands are
// forwarded to the chat service in order, one session at a time; pushes
// from the bus are ordered and deduplicated per stream (stream.go),
// encoded once per edge (frame.go), queued per session and written by one
// writer that merges whatever is pending into one Push frame. Pushes that
// carry state get a push_id and stay in the session's window until a
// cumulative Ack; they are resent after AckTimeout and the session is
// closed after MaxResends, so the client reconnects and syncs.
//
// The session core works on FrameConn, reports failures as its own Error
// and knows nothing of the RPC library; conn_connect.go adapts connect-go's
// streams, conn_grpc.go grpc-go's, and each maps Error to its codes.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagglechat/waggle/bus"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// Edge terminates client sessions. Create it with New, start its background
// work with Run, serve streams with Serve and ServeSubscribe (or NewHandler),
// and drain it with Shutdown.
type Edge struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	hub      *hub
	hellos   *helloGate
	watchers *watchers
	routes   *routes
	topics   *topics

	register   *batcher[*presencev1.Session, struct{}]
	unregister *batcher[*presencev1.Session, struct{}]
	// registryOrder keeps a renewal and an unregistration of the same
	// session from crossing: a renewal that landed after the session was
	// unregistered would bring it back for a TTL.
	registryOrder sync.Mutex
	loads         *batcher[string, *chatv1.UserRoutes]
	subs          *batcher[string, bus.Subscription]
	reads         *batcher[readReq, readRes]
	deliveries    *deliveryBatcher
	stats         stats

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

// stats counts what the edge repaired, for tests and operators.
type stats struct {
	reads, syncsRequested, resubscribes atomic.Int64
}

// Stats is a snapshot of an edge's repair counters.
type Stats struct {
	// RangesRead is how many stream ranges were read back from the chat
	// service: holes, and catch-ups after a subscribe or a bus loss.
	RangesRead int64
	// SyncsRequested is how many users were told to sync after a bus
	// interruption.
	SyncsRequested int64
	// Resubscribes is how many bus interruptions were repaired.
	Resubscribes int64
}

// Stats returns the edge's repair counters.
func (e *Edge) Stats() Stats {
	return Stats{RangesRead: e.stats.reads.Load(), SyncsRequested: e.stats.syncsRequested.Load(), Resubscribes: e.stats.resubscribes.Load()}
}

// Batch limits of the calls the edge groups.
const (
	maxRouteBatch     = 1000 // ListRoutes users
	maxSubscribeBatch = 5000 // channels per Subscribe
	maxReadBatch      = 1000 // ReadEvents ranges
)

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
		hellos:     newHelloGate(cfg.MaxPendingHellos, cfg.MaxPendingHellosPerConn),
		deliveries: newDeliveryBatcher(),
		stop:       make(chan struct{}),
		runDone:    make(chan struct{}),
	}
	e.watchers = newWatchers(e)
	e.routes = newRoutes(e)
	e.topics = newTopics(e)
	e.register = newBatcher(maxRegistryBatch, cfg.CommandTimeout, func(ctx context.Context, ss []*presencev1.Session) ([]struct{}, error) {
		_, err := deps.Registry.RegisterSessions(ctx, &presencev1.RegisterSessionsRequest{Sessions: ss})
		return make([]struct{}, len(ss)), err
	})
	e.unregister = newBatcher(maxRegistryBatch, cfg.CommandTimeout, func(ctx context.Context, ss []*presencev1.Session) ([]struct{}, error) {
		e.registryOrder.Lock()
		defer e.registryOrder.Unlock()
		_, err := deps.Registry.UnregisterSessions(ctx, &presencev1.UnregisterSessionsRequest{Sessions: ss})
		return make([]struct{}, len(ss)), err
	})
	e.loads = newBatcher(maxRouteBatch, cfg.CommandTimeout, e.loadRoutes)
	e.subs = newBatcher(maxSubscribeBatch, cfg.CommandTimeout, e.subscribeChannels)
	e.reads = newBatcher(maxReadBatch, cfg.CommandTimeout, e.readRanges)
	return e, nil
}

// ID is the edge's id (Config.EdgeID or its generated default).
func (e *Edge) ID() string { return e.cfg.EdgeID }

// Run runs the background loops (registry renewal, the timeout and resend
// sweeper, delivery reports) until ctx is done or Shutdown has drained the
// sessions. Call it once.
func (e *Edge) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("edge: Run called twice")
	}
	defer close(e.runDone)
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
		return newError(CodeUnavailable, errors.New("edge is draining: connect to another edge"))
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
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, s := range e.hub.all() {
				s.sweep(now)
			}
			if now.Sub(lastPrune) > directIdle/10 {
				e.routes.prune(now)
				lastPrune = now
			}
		}
	}
}
