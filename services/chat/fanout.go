package chat

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
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
// process or over RPC. Only offline pushes need it.
type SessionLocator interface {
	LookupSessions(context.Context, *presencev1.LookupSessionsRequest) (*presencev1.LookupSessionsResponse, error)
}

// Publisher puts payloads on bus channels in one round trip.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []bus.Message) error
}

// FanoutConfig tunes delivery. Zero values take the defaults noted.
type FanoutConfig struct {
	// QueueLen is how many publications may wait for the bus. Default
	// 10,000.
	QueueLen int
	// EnqueueTimeout is how long a commit waits for room in a full queue
	// before its push is dropped (edges then repair on their next gap, and
	// clients through sync). Default 1 s.
	EnqueueTimeout time.Duration
	// PublishWait is how long a committed event's caller waits for it to
	// be on the bus before answering anyway (it stays queued). Default 1 s.
	PublishWait time.Duration
	// RetryFor is how long a publication that Redis refused is retried
	// before it is given up. Edges whose subscriptions were cut repair
	// what they missed on their own. Default 30 s.
	RetryFor time.Duration
	// RepublishWindow: when the fanout starts, the newest event of every
	// conversation changed this recently is published again. A chat
	// process killed between a commit and its publish leaves that event
	// unannounced, and with no later event in its conversation no edge
	// would notice the hole; a newest event they already hold is dropped,
	// one past their position makes them read back what they missed.
	// Default 1 min; negative turns it off.
	RepublishWindow time.Duration
	// Push is told about messages for members with no live session. Nil
	// sends no offline pushes.
	Push notify.Notifier
	// PushLimit is the largest conversation whose offline members get
	// pushes; in larger groups a message would cost a push per member.
	// Default 1000.
	PushLimit int
	// OfflineQueueLen is how many messages may wait for the offline push
	// worker; past it, their offline pushes are dropped. Default 1024.
	OfflineQueueLen int
}

// Fanout delivers what the chat service commits. It publishes each event
// once per topic: the group's channel, or the two users' channels of a
// direct conversation. Edges subscribe to the topics their sessions need
// and decide which sessions see an event, so publishing costs no lookup of
// members or sessions at any group size. Offline pushes are worked out
// afterwards on a queue of their own and never delay a live push.
type Fanout struct {
	cfg     FanoutConfig
	store   FanoutStore
	locate  SessionLocator
	publish Publisher
	log     *slog.Logger
	routes  routeCache
	queue   chan *publication
	offline chan offlineJob
}

// publication is the messages of one commit, published in one pipeline
// with whatever else is queued.
type publication struct {
	msgs []bus.Message
	at   time.Time
	done chan struct{} // closed once published or given up
}

type offlineJob struct {
	msg   *chatv1.Message
	route route
}

func NewFanout(cfg FanoutConfig, store FanoutStore, locate SessionLocator, publish Publisher, log *slog.Logger) *Fanout {
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 10_000
	}
	if cfg.EnqueueTimeout == 0 {
		cfg.EnqueueTimeout = time.Second
	}
	if cfg.PublishWait == 0 {
		cfg.PublishWait = time.Second
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 30 * time.Second
	}
	if cfg.PushLimit == 0 {
		cfg.PushLimit = 1000
	}
	if cfg.OfflineQueueLen == 0 {
		cfg.OfflineQueueLen = 1024
	}
	if cfg.RepublishWindow == 0 {
		cfg.RepublishWindow = time.Minute
	}
	return &Fanout{cfg: cfg, store: store, locate: locate, publish: publish, log: log,
		routes:  newRouteCache(),
		queue:   make(chan *publication, cfg.QueueLen),
		offline: make(chan offlineJob, cfg.OfflineQueueLen)}
}

// Notify publishes a committed conversation event and returns once it is
// on the bus (or after PublishWait): a sender's answer then means the
// event was handed to the edges, so an answered message reaches online
// devices even if this process dies next.
func (f *Fanout) Notify(ctx context.Context, c Committed) {
	ev := c.Event
	r, err := f.route(ctx, ev.GetConversationId())
	if err != nil {
		f.log.Warn("fanout: conversation route, push left to repair", "conversation", ev.GetConversationId(), "seq", ev.GetSeq(), "err", err)
		return
	}
	env := &busv1.Envelope{Push: &edgev1.Push{Events: []*chatv1.Event{ev}}}
	if c.SenderSessionID != "" {
		env.ExcludeSessionIds = []string{c.SenderSessionID}
	}
	f.wait(ctx, f.enqueue(env, r.eventChannels(ev)...))
	if m := ev.GetMessage(); m != nil && f.cfg.Push != nil {
		select {
		case f.offline <- offlineJob{msg: m, route: r}:
		default:
			f.log.Warn("fanout: offline push queue full, push dropped", "conversation", m.GetConversationId(), "seq", m.GetSeq())
		}
	}
}

// NotifyUser publishes a committed user event on the user's channel and
// returns once it is on the bus (or after PublishWait).
func (f *Fanout) NotifyUser(ctx context.Context, user string, ev *chatv1.UserEvent, senderSession string) {
	env := &busv1.Envelope{Push: &edgev1.Push{UserEvents: []*chatv1.UserEvent{ev}}}
	if senderSession != "" {
		env.ExcludeSessionIds = []string{senderSession}
	}
	f.wait(ctx, f.enqueue(env, bus.UserChannel(user)))
}

// EphemeralToConversation publishes a push that is not stored (typing,
// read markers) to a conversation's current members but except's
// sessions. It does not wait.
func (f *Fanout) EphemeralToConversation(ctx context.Context, conv string, push *edgev1.Push, except string) {
	r, err := f.route(ctx, conv)
	if err != nil {
		f.log.Warn("fanout: conversation route", "conversation", conv, "err", err)
		return
	}
	if !r.direct {
		f.enqueue(&busv1.Envelope{Push: push, ExcludeUserIds: []string{except}}, bus.ConversationChannel(conv))
		return
	}
	var channels []string
	for _, u := range r.users {
		if u != except {
			channels = append(channels, bus.UserChannel(u))
		}
	}
	f.enqueue(&busv1.Envelope{Push: push}, channels...)
}

// EphemeralToUser publishes a push that is not stored (unread counts) to a
// user's sessions but senderSession. It does not wait.
func (f *Fanout) EphemeralToUser(_ context.Context, user string, push *edgev1.Push, senderSession string) {
	env := &busv1.Envelope{Push: push}
	if senderSession != "" {
		env.ExcludeSessionIds = []string{senderSession}
	}
	f.enqueue(env, bus.UserChannel(user))
}

// RevokeDevice closes a logged-out device's live sessions: the edges
// holding the user's sessions get an envelope naming the device. It
// implements account.DeviceRevoker.
func (f *Fanout) RevokeDevice(ctx context.Context, device auth.Identity) error {
	env := &busv1.Envelope{CloseDevices: []*busv1.DeviceRef{{UserId: device.UserID, DeviceId: device.DeviceID}}}
	payload, err := proto.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	return f.publish.PublishBatch(ctx, []bus.Message{{Channel: bus.UserChannel(device.UserID), Payload: payload}})
}

// enqueue queues env for channels. Under overload it drops the push after
// EnqueueTimeout rather than stall senders forever; what was committed is
// repaired by edges and clients.
func (f *Fanout) enqueue(env *busv1.Envelope, channels ...string) *publication {
	if len(channels) == 0 {
		return nil
	}
	payload, err := proto.Marshal(env)
	if err != nil {
		f.log.Error("fanout: encode envelope", "err", err)
		return nil
	}
	p := &publication{msgs: make([]bus.Message, len(channels)), at: time.Now(), done: make(chan struct{})}
	for i, ch := range channels {
		p.msgs[i] = bus.Message{Channel: ch, Payload: payload}
	}
	select {
	case f.queue <- p:
		return p
	default:
	}
	t := time.NewTimer(f.cfg.EnqueueTimeout)
	defer t.Stop()
	select {
	case f.queue <- p:
		return p
	case <-t.C:
		f.log.Warn("fanout: queue full, push dropped", "channel", channels[0])
		return nil
	}
}

func (f *Fanout) wait(ctx context.Context, p *publication) {
	if p == nil {
		return
	}
	t := time.NewTimer(f.cfg.PublishWait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// maxBatch bounds the messages of one pipeline.
const maxBatch = 1000

// Run publishes queued events and works out offline pushes until ctx is
// done.
func (f *Fanout) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { f.runOffline(ctx) })
	wg.Go(func() { f.republishRecent(ctx) })
	defer wg.Wait()
	for {
		var p *publication
		select {
		case <-ctx.Done():
			return
		case p = <-f.queue:
		}
		// Group commit: everything queued meanwhile goes in one round trip,
		// in queue order, so each channel keeps its publish order.
		batch := []*publication{p}
		n := len(p.msgs)
	more:
		for n < maxBatch {
			select {
			case q := <-f.queue:
				batch = append(batch, q)
				n += len(q.msgs)
			default:
				break more
			}
		}
		msgs := make([]bus.Message, 0, n)
		for _, p := range batch {
			msgs = append(msgs, p.msgs...)
		}
		f.publishRetrying(ctx, batch[0].at, msgs)
		for _, p := range batch {
			close(p.done)
		}
	}
}

// republishRecent publishes again the newest event of each conversation
// changed within RepublishWindow (see FanoutConfig), without offline pushes.
func (f *Fanout) republishRecent(ctx context.Context) {
	if f.cfg.RepublishWindow < 0 {
		return
	}
	rows, err := f.store.RecentEvents(ctx, f.cfg.RepublishWindow)
	if err != nil {
		f.log.Warn("fanout: read recent events to republish", "err", err)
		return
	}
	events := make([]*chatv1.Event, len(rows))
	for i, r := range rows {
		if events[i], err = decodeEvent(r); err != nil {
			f.log.Warn("fanout: read recent events to republish", "err", err)
			return
		}
	}
	for _, ev := range events {
		r, err := f.route(ctx, ev.GetConversationId())
		if err != nil {
			f.log.Warn("fanout: conversation route, republish skipped", "conversation", ev.GetConversationId(), "err", err)
			continue
		}
		f.enqueue(&busv1.Envelope{Push: &edgev1.Push{Events: []*chatv1.Event{ev}}}, r.eventChannels(ev)...)
	}
	f.log.Info("fanout: republished the newest event of recently changed conversations", "conversations", len(events), "window", f.cfg.RepublishWindow)
}

// publishRetrying publishes msgs, retrying with backoff while Redis
// refuses them, for up to RetryFor from since. A retry may publish some
// messages twice; edges drop repeated positions.
func (f *Fanout) publishRetrying(ctx context.Context, since time.Time, msgs []bus.Message) {
	delay := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f.publish.PublishBatch(pctx, msgs)
		cancel()
		if err == nil || ctx.Err() != nil {
			if attempt > 0 && err == nil {
				f.log.Info("fanout: publishing again", "messages", len(msgs), "attempts", attempt+1)
			}
			return
		}
		if time.Since(since) > f.cfg.RetryFor {
			f.log.Error("fanout: publish failed, pushes given up (edges repair once their bus is back)", "messages", len(msgs), "err", err)
			return
		}
		if attempt == 0 {
			f.log.Warn("fanout: publish failed, retrying", "messages", len(msgs), "err", err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(2*delay, time.Second)
	}
}

// route is where a conversation's events are published.
type route struct {
	direct bool
	users  [2]string // a direct conversation's members
}

// eventChannels are the channels ev goes to: a direct conversation's two
// users, or a group's channel, plus the users a group event makes members
// (their edges may not be subscribed to the group yet).
func (r route) eventChannels(ev *chatv1.Event) []string {
	if r.direct {
		return []string{bus.UserChannel(r.users[0]), bus.UserChannel(r.users[1])}
	}
	channels := []string{bus.ConversationChannel(ev.GetConversationId())}
	var joined []string
	switch k := ev.GetKind().(type) {
	case *chatv1.Event_ConversationCreated:
		joined = k.ConversationCreated.GetMemberUserIds()
	case *chatv1.Event_MembersAdded:
		joined = k.MembersAdded.GetUserIds()
	}
	for _, u := range joined {
		channels = append(channels, bus.UserChannel(u))
	}
	return channels
}

func (f *Fanout) route(ctx context.Context, conv string) (route, error) {
	if r, ok := f.routes.get(conv); ok {
		return r, nil
	}
	// Not the caller's context: a sender that hung up still gets its push
	// delivered.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	id, err := uuid.Parse(conv)
	if err != nil {
		return route{}, fmt.Errorf("conversation id %q: %w", conv, err)
	}
	direct, pair, err := f.store.Route(ctx, id)
	if err != nil {
		return route{}, fmt.Errorf("read conversation route: %w", err)
	}
	r := route{direct: direct}
	if direct {
		r.users = [2]string{pair[0].String(), pair[1].String()}
	}
	f.routes.put(conv, r)
	return r, nil
}

// routeCache remembers conversations' routes, which never change. It keeps
// two generations of at most routeCacheSize entries each, dropping the
// older when the newer fills: a bounded cache that keeps what is in use.
type routeCache struct {
	mu        sync.Mutex
	cur, prev map[string]route
}

const routeCacheSize = 50_000

func newRouteCache() routeCache {
	return routeCache{cur: make(map[string]route), prev: make(map[string]route)}
}

func (c *routeCache) get(conv string) (route, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cur[conv]; ok {
		return r, true
	}
	r, ok := c.prev[conv]
	if ok {
		c.putLocked(conv, r)
	}
	return r, ok
}

func (c *routeCache) put(conv string, r route) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(conv, r)
}

func (c *routeCache) putLocked(conv string, r route) {
	if len(c.cur) >= routeCacheSize {
		c.prev, c.cur = c.cur, make(map[string]route)
	}
	c.cur[conv] = r
}

// runOffline hands notifications for offline members to the notifier, one
// message at a time, behind the live path.
func (f *Fanout) runOffline(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-f.offline:
			if err := f.pushOffline(ctx, j); err != nil && ctx.Err() == nil {
				f.log.Warn("fanout: offline push", "conversation", j.msg.GetConversationId(), "seq", j.msg.GetSeq(), "err", err)
			}
		}
	}
}

// pushBadgeCap bounds the count behind a push's badge: a member with a huge
// backlog would otherwise cost a long scan per message, and apps show
// "999+" anyway. GetBadge and ListConversations stay exact.
const pushBadgeCap = 1000

// pushOffline notifies the members of j's conversation who may see the
// message, have no live session and do not mute it, with their badges.
func (f *Fanout) pushOffline(ctx context.Context, j offlineJob) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m := j.msg
	conv := uuid.MustParse(m.GetConversationId())
	sender, err := uuid.Parse(m.GetSenderUserId())
	if err != nil {
		return fmt.Errorf("sender %q: %w", m.GetSenderUserId(), err)
	}
	var users []string
	if j.route.direct {
		for _, u := range j.route.users {
			if u != m.GetSenderUserId() {
				users = append(users, u)
			}
		}
	} else {
		var err error
		if users, err = f.store.PushRecipients(ctx, conv, int64(m.GetSeq()), sender, f.cfg.PushLimit+1); err != nil {
			return err
		}
		if len(users) >= f.cfg.PushLimit {
			return nil // a push per member of a large group is too much
		}
	}
	if len(users) == 0 {
		return nil
	}
	found, err := f.locate.LookupSessions(ctx, &presencev1.LookupSessionsRequest{UserIds: users})
	if err != nil {
		return fmt.Errorf("lookup sessions: %w", err)
	}
	online := make(map[string]bool, len(found.GetSessions()))
	for _, s := range found.GetSessions() {
		online[s.GetUserId()] = true
	}
	offline := users[:0]
	for _, u := range users {
		if !online[u] {
			offline = append(offline, u)
		}
	}
	if len(offline) == 0 {
		return nil
	}
	title, senderName, err := f.store.PushDetails(ctx, conv, sender)
	if err != nil {
		return err
	}
	badges, err := f.store.PushBadges(ctx, conv, offline, pushBadgeCap)
	if err != nil {
		return err
	}
	preview := notify.Preview(m.GetContent().GetText().GetBody(), m.GetContent().GetCustom().GetType())
	for _, u := range offline { // in the recipients' order
		badge, ok := badges[u]
		if !ok {
			continue // muted, or no longer a member
		}
		f.cfg.Push.Notify(notify.Notification{UserID: u, Badge: badge, ConversationID: m.GetConversationId(), ConversationTitle: title,
			MessageID: m.GetMessageId(), Seq: m.GetSeq(), SenderUserID: m.GetSenderUserId(), SenderName: senderName, Preview: preview,
			Time: m.GetCreateTime().AsTime()})
	}
	return nil
}
