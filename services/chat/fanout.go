package chat

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/notify"
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

// maxLookup is the most users one LookupSessions call takes.
const maxLookup = 10_000

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
	// Push is told about messages for members with no live session. Nil
	// sends no offline pushes.
	Push notify.Notifier
	// PushLimit is the largest conversation whose offline members get
	// pushes; in larger groups a message would cost a push per member.
	// Default 1000.
	PushLimit int
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
	shards  []chan job
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
	if cfg.PushLimit == 0 {
		cfg.PushLimit = 1000
	}
	f := &Fanout{cfg: cfg, db: db, locate: locate, publish: publish, log: log, seed: maphash.MakeSeed()}
	f.shards = make([]chan job, cfg.Shards)
	for i := range f.shards {
		f.shards[i] = make(chan job, cfg.QueueLen)
	}
	return f
}

// job is one push to deliver. Jobs with a stream and seq are published in
// seq order per stream (a conversation, or a user's own events); seq 0
// marks an ephemeral push that goes out as soon as it is dequeued.
type job struct {
	stream string
	seq    uint64
	// recipients lists the users to push to; nil means the members who may
	// see event.
	recipients []string
	event      *chatv1.Event
	push       *edgev1.Push
	// exclude is the session that caused the push; its command's answer
	// already carried it.
	exclude string
}

// Notify queues a committed conversation event for its members' sessions.
func (f *Fanout) Notify(ev Committed) {
	f.enqueue(job{stream: ev.Event.GetConversationId(), seq: ev.Event.GetSeq(), event: ev.Event,
		push: &edgev1.Push{Events: []*chatv1.Event{ev.Event}}, exclude: ev.SenderSessionID})
}

// NotifyUser queues a committed user event for the user's sessions.
func (f *Fanout) NotifyUser(user string, ev *chatv1.UserEvent, senderSession string) {
	f.enqueue(job{stream: "user:" + user, seq: ev.GetSeq(), recipients: []string{user},
		push: &edgev1.Push{UserEvents: []*chatv1.UserEvent{ev}}, exclude: senderSession})
}

// Ephemeral queues a push that is not stored (typing, others' read
// markers, unread counts) for users' live sessions.
func (f *Fanout) Ephemeral(users []string, push *edgev1.Push, senderSession string) {
	if len(users) == 0 {
		return
	}
	f.enqueue(job{stream: users[0], recipients: users, push: push, exclude: senderSession})
}

// enqueue queues j on its stream's worker. Under overload it drops the job
// after EnqueueTimeout rather than stall senders forever: stored events are
// repaired by the recipients' sync.
func (f *Fanout) enqueue(j job) {
	shard := f.shards[maphash.String(f.seed, j.stream)%uint64(len(f.shards))]
	select {
	case shard <- j:
		return
	default:
	}
	t := time.NewTimer(f.cfg.EnqueueTimeout)
	defer t.Stop()
	select {
	case shard <- j:
	case <-t.C:
		f.log.Warn("fanout: queue full, push dropped", "stream", j.stream, "seq", j.seq)
	}
}

// Run delivers queued events until ctx is done.
func (f *Fanout) Run(ctx context.Context) {
	done := make(chan struct{})
	for _, shard := range f.shards {
		go func() {
			defer func() { done <- struct{}{} }()
			f.work(ctx, shard)
		}()
	}
	for range f.shards {
		<-done
	}
}

// reorderWait is how long a worker holds an event whose predecessor has not
// been queued yet. Senders of one conversation commit in seq order but call
// Notify a moment later in any order; holding briefly lets the worker publish
// in seq order, so clients see no false gaps. A predecessor that never comes
// (another chat process publishes it, or it was dropped) stops the wait.
const reorderWait = 50 * time.Millisecond

// order is a worker's view of one conversation's publishing.
type order struct {
	next     uint64 // the seq expected next; 0 before the first one
	held     map[uint64]job
	deadline time.Time // when held events go out regardless
	seen     time.Time
}

func (f *Fanout) work(ctx context.Context, queue <-chan job) {
	orders := map[string]*order{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-queue:
			if j.seq == 0 {
				f.deliverLogged(ctx, j)
				continue
			}
			o := orders[j.stream]
			if o == nil {
				o = &order{held: map[uint64]job{}}
				orders[j.stream] = o
			}
			o.seen = time.Now()
			switch {
			case o.next == 0 || j.seq <= o.next:
				f.publishFrom(ctx, o, j)
			default:
				o.held[j.seq] = j
				if o.deadline.IsZero() {
					o.deadline = time.Now().Add(reorderWait)
					timer.Reset(reorderWait)
				}
			}
		case now := <-timer.C:
			for _, o := range orders {
				if !o.deadline.IsZero() && !now.Before(o.deadline) {
					f.releaseHeld(ctx, o)
				}
			}
			if now.Sub(lastSweep) > time.Minute {
				for conv, o := range orders {
					if len(o.held) == 0 && now.Sub(o.seen) > time.Minute {
						delete(orders, conv)
					}
				}
				lastSweep = now
			}
			timer.Reset(soonest(orders, now))
		}
	}
}

// publishFrom delivers ev and every held event that now follows in order.
func (f *Fanout) publishFrom(ctx context.Context, o *order, j job) {
	f.deliverLogged(ctx, j)
	if seq := j.seq; seq >= o.next {
		o.next = seq + 1
	}
	for {
		next, ok := o.held[o.next]
		if !ok {
			break
		}
		delete(o.held, o.next)
		f.deliverLogged(ctx, next)
		o.next++
	}
	if len(o.held) == 0 {
		o.deadline = time.Time{}
	}
}

// releaseHeld gives up waiting. A conversation's seqs commit in order, so
// the events missing before the held ones are committed: they are read back
// and delivered first, and the stream still goes out in order (a
// predecessor may have gone through another chat process, or been dropped
// under load). What cannot be read is skipped; recipients then sync.
func (f *Fanout) releaseHeld(ctx context.Context, o *order) {
	seqs := make([]uint64, 0, len(o.held))
	for seq := range o.held {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	first := o.held[seqs[0]]
	if first.event != nil && o.next > 0 {
		missing, err := f.eventsBetween(ctx, first.event.GetConversationId(), o.next, seqs[len(seqs)-1])
		if err != nil {
			f.log.Warn("fanout: read missing events", "conversation", first.event.GetConversationId(), "err", err)
		}
		for _, ev := range missing {
			if _, held := o.held[ev.GetSeq()]; !held {
				o.held[ev.GetSeq()] = job{stream: first.stream, seq: ev.GetSeq(), event: ev, push: &edgev1.Push{Events: []*chatv1.Event{ev}}}
				seqs = append(seqs, ev.GetSeq())
			}
		}
		slices.Sort(seqs)
	}
	for _, seq := range seqs {
		j := o.held[seq]
		delete(o.held, seq)
		f.deliverLogged(ctx, j)
		o.next = seq + 1
	}
	o.deadline = time.Time{}
}

// eventsBetween reads conv's events with from <= seq < to.
func (f *Fanout) eventsBetween(ctx context.Context, conv string, from, to uint64) ([]*chatv1.Event, error) {
	rows, err := f.db.Query(ctx, `SELECT `+eventColumns+` FROM events e WHERE e.conversation_id = $1 AND e.seq >= $2 AND e.seq < $3
		ORDER BY e.seq`, conv, int64(from), int64(to))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*chatv1.Event, error) {
		var r eventRow
		if err := r.scan(row); err != nil {
			return nil, err
		}
		return r.event()
	})
}

func soonest(orders map[string]*order, now time.Time) time.Duration {
	wait := time.Minute
	for _, o := range orders {
		if !o.deadline.IsZero() {
			wait = min(wait, max(o.deadline.Sub(now), time.Millisecond))
		}
	}
	return wait
}

func (f *Fanout) deliverLogged(ctx context.Context, j job) {
	if err := f.deliver(ctx, j); err != nil && ctx.Err() == nil {
		f.log.Warn("fanout: delivery failed, left to sync", "stream", j.stream, "seq", j.seq, "err", err)
	}
}

func (f *Fanout) deliver(ctx context.Context, j job) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	users := j.recipients
	if users == nil {
		var err error
		if users, err = f.recipients(ctx, j.event); err != nil {
			return err
		}
	}
	var sessions []*presencev1.Session
	for start := 0; start < len(users); start += maxLookup {
		found, err := f.locate.LookupSessions(ctx, &presencev1.LookupSessionsRequest{UserIds: users[start:min(start+maxLookup, len(users))]})
		if err != nil {
			return fmt.Errorf("lookup sessions: %w", err)
		}
		sessions = append(sessions, found.GetSessions()...)
	}
	byEdge := map[string][]string{}
	online := map[string]bool{}
	for _, s := range sessions {
		online[s.GetUserId()] = true
		if s.GetSessionId() == j.exclude {
			continue
		}
		byEdge[s.GetEdgeId()] = append(byEdge[s.GetEdgeId()], s.GetUserId())
	}
	if m := j.event.GetMessage(); m != nil && f.cfg.Push != nil && len(users) <= f.cfg.PushLimit {
		var offline []string
		for _, u := range users {
			if !online[u] && u != m.GetSenderUserId() {
				offline = append(offline, u)
			}
		}
		if err := f.pushOffline(ctx, m, offline); err != nil {
			f.log.Warn("fanout: offline push", "conversation", m.GetConversationId(), "seq", m.GetSeq(), "err", err)
		}
	}
	msgs := make([]bus.Message, 0, len(byEdge))
	for edge, users := range byEdge {
		env := &busv1.Envelope{UserIds: dedupe(users), Push: j.push}
		if j.exclude != "" {
			env.ExcludeSessionIds = []string{j.exclude}
		}
		payload, err := proto.Marshal(env)
		if err != nil {
			return fmt.Errorf("encode envelope: %w", err)
		}
		msgs = append(msgs, bus.Message{Channel: bus.EdgeChannel(edge), Payload: payload})
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := f.publish.PublishBatch(ctx, msgs); err != nil {
		return fmt.Errorf("publish to %d edges: %w", len(msgs), err)
	}
	return nil
}

// pushBadgeCap bounds the count behind a push's badge: a member with a huge
// backlog would otherwise cost a long scan per message, and apps show
// "999+" anyway. GetBadge and ListConversations stay exact.
const pushBadgeCap = 1000

// pushOffline hands a notification per offline recipient (unless they muted
// the conversation) to the push notifier, with their badge.
func (f *Fanout) pushOffline(ctx context.Context, m *chatv1.Message, users []string) error {
	if len(users) == 0 {
		return nil
	}
	var title, sender string
	if err := f.db.QueryRow(ctx, `SELECT c.title, coalesce((SELECT display_name FROM users WHERE id = $2), '')
		FROM conversations c WHERE c.id = $1`, m.GetConversationId(), m.GetSenderUserId()).Scan(&title, &sender); err != nil {
		return fmt.Errorf("conversation: %w", err)
	}
	rows, err := f.db.Query(ctx, `
		SELECT o.user_id::text, (SELECT count(*) FROM (SELECT FROM members m JOIN events u ON u.conversation_id = m.conversation_id
			WHERE m.user_id = o.user_id AND m.left_seq IS NULL AND NOT m.muted AND `+unreadFilter+` LIMIT $3) capped)
		FROM members o WHERE o.conversation_id = $1 AND o.user_id = ANY($2::uuid[]) AND o.left_seq IS NULL AND NOT o.muted`,
		m.GetConversationId(), users, pushBadgeCap)
	if err != nil {
		return fmt.Errorf("badges: %w", err)
	}
	defer rows.Close()
	preview := notify.Preview(m.GetContent().GetText().GetBody(), m.GetContent().GetCustom().GetType())
	for rows.Next() {
		n := notify.Notification{ConversationID: m.GetConversationId(), ConversationTitle: title, MessageID: m.GetMessageId(),
			Seq: m.GetSeq(), SenderUserID: m.GetSenderUserId(), SenderName: sender, Preview: preview, Time: m.GetCreateTime().AsTime()}
		if err := rows.Scan(&n.UserID, &n.Badge); err != nil {
			return fmt.Errorf("badges: %w", err)
		}
		f.cfg.Push.Notify(n)
	}
	return rows.Err()
}

// recipients are the members who may see ev, including one just removed
// by it.
func (f *Fanout) recipients(ctx context.Context, ev *chatv1.Event) ([]string, error) {
	rows, err := f.db.Query(ctx, `SELECT user_id FROM members WHERE conversation_id = $1
		AND joined_seq < $2 AND (left_seq IS NULL OR left_seq >= $2)`,
		uuid.MustParse(ev.GetConversationId()), int64(ev.GetSeq()))
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

// RevokeDevice closes a logged-out device's live sessions: the edges holding
// them get an envelope naming the device. It implements
// account.DeviceRevoker.
func (f *Fanout) RevokeDevice(ctx context.Context, device auth.Identity) error {
	found, err := f.locate.LookupSessions(ctx, &presencev1.LookupSessionsRequest{UserIds: []string{device.UserID}})
	if err != nil {
		return fmt.Errorf("lookup sessions: %w", err)
	}
	payload, err := proto.Marshal(&busv1.Envelope{CloseDevices: []*busv1.DeviceRef{{UserId: device.UserID, DeviceId: device.DeviceID}}})
	if err != nil {
		return err
	}
	var msgs []bus.Message
	seen := map[string]bool{}
	for _, s := range found.GetSessions() {
		if s.GetDeviceId() == device.DeviceID && !seen[s.GetEdgeId()] {
			seen[s.GetEdgeId()] = true
			msgs = append(msgs, bus.Message{Channel: bus.EdgeChannel(s.GetEdgeId()), Payload: payload})
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return f.publish.PublishBatch(ctx, msgs)
}
