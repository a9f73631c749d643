package chat

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// SessionLocator finds users' live sessions: the presence registry, in
// process or over RPC.
type SessionLocator interface {
	LookupSessions(context.Context, *presencev1.LookupSessionsRequest) (*presencev1.LookupSessionsResponse, error)
}

// Publisher puts payloads on bus channels in one round trip.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []bus.Message) error
}

// EdgeChannel is the bus channel an edge node listens on.
func EdgeChannel(edgeID string) string { return "edge:" + edgeID }

// FanoutConfig tunes delivery. Zero values take the defaults noted.
type FanoutConfig struct {
	// Shards is the number of delivery workers. Events of one conversation
	// always go through the same worker, so they are published in seq order.
	// Default 16.
	Shards int
	// QueueLen is each worker's queue length. Default 1024.
	QueueLen int
	// EnqueueTimeout is how long Notify waits for room before dropping an
	// event (clients then repair it through sync). Default 1 s.
	EnqueueTimeout time.Duration
}

// Fanout delivers committed events: it finds the members who may see each
// event, their sessions through presence in one batched call, and publishes
// one envelope per edge node that holds any of them.
type Fanout struct {
	cfg     FanoutConfig
	db      *pgxpool.Pool
	locate  SessionLocator
	publish Publisher
	log     *slog.Logger
	seed    maphash.Seed
	shards  []chan Committed
}

func NewFanout(cfg FanoutConfig, db *pgxpool.Pool, locate SessionLocator, publish Publisher, log *slog.Logger) *Fanout {
	if cfg.Shards == 0 {
		cfg.Shards = 16
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 1024
	}
	if cfg.EnqueueTimeout == 0 {
		cfg.EnqueueTimeout = time.Second
	}
	f := &Fanout{cfg: cfg, db: db, locate: locate, publish: publish, log: log, seed: maphash.MakeSeed()}
	f.shards = make([]chan Committed, cfg.Shards)
	for i := range f.shards {
		f.shards[i] = make(chan Committed, cfg.QueueLen)
	}
	return f
}

// Notify queues ev for delivery. Under overload it drops the event after
// EnqueueTimeout rather than stall senders forever: the event is stored, and
// recipients find the gap and sync.
func (f *Fanout) Notify(ev Committed) {
	shard := f.shards[maphash.String(f.seed, ev.Event.GetConversationId())%uint64(len(f.shards))]
	select {
	case shard <- ev:
		return
	default:
	}
	t := time.NewTimer(f.cfg.EnqueueTimeout)
	defer t.Stop()
	select {
	case shard <- ev:
	case <-t.C:
		f.log.Warn("fanout: queue full, event left to sync", "conversation", ev.Event.GetConversationId(), "seq", ev.Event.GetSeq())
	}
}

// Run delivers queued events until ctx is done.
func (f *Fanout) Run(ctx context.Context) {
	done := make(chan struct{})
	for _, shard := range f.shards {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-shard:
					if err := f.deliver(ctx, ev); err != nil && ctx.Err() == nil {
						f.log.Warn("fanout: delivery failed, left to sync", "conversation", ev.Event.GetConversationId(),
							"seq", ev.Event.GetSeq(), "err", err)
					}
				}
			}
		}()
	}
	for range f.shards {
		<-done
	}
}

func (f *Fanout) deliver(ctx context.Context, ev Committed) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	users, err := f.recipients(ctx, ev)
	if err != nil {
		return err
	}
	found, err := f.locate.LookupSessions(ctx, &presencev1.LookupSessionsRequest{UserIds: users})
	if err != nil {
		return fmt.Errorf("lookup sessions: %w", err)
	}
	byEdge := map[string][]string{}
	for _, s := range found.GetSessions() {
		if s.GetSessionId() == ev.SenderSessionID {
			continue
		}
		byEdge[s.GetEdgeId()] = append(byEdge[s.GetEdgeId()], s.GetUserId())
	}
	msgs := make([]bus.Message, 0, len(byEdge))
	for edge, users := range byEdge {
		env := &busv1.Envelope{
			UserIds: dedupe(users),
			Push:    &edgev1.Push{Events: []*chatv1.Event{ev.Event}},
		}
		if ev.SenderSessionID != "" {
			env.ExcludeSessionIds = []string{ev.SenderSessionID}
		}
		payload, err := proto.Marshal(env)
		if err != nil {
			return fmt.Errorf("encode envelope: %w", err)
		}
		msgs = append(msgs, bus.Message{Channel: EdgeChannel(edge), Payload: payload})
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := f.publish.PublishBatch(ctx, msgs); err != nil {
		return fmt.Errorf("publish to %d edges: %w", len(msgs), err)
	}
	return nil
}

// recipients are the members who may see the event's seq, including one
// just removed by it.
func (f *Fanout) recipients(ctx context.Context, ev Committed) ([]string, error) {
	rows, err := f.db.Query(ctx, `SELECT user_id FROM members WHERE conversation_id = $1
		AND joined_seq < $2 AND (left_seq IS NULL OR left_seq >= $2)`,
		uuid.MustParse(ev.Event.GetConversationId()), int64(ev.Event.GetSeq()))
	if err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out, nil
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
