package edge

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// topics are the groups this edge's sessions are in. The edge subscribes
// to a group's channel while one of its users is a member, and decides
// locally which sessions get each event: membership changes are events of
// the group's own sequence, so applying them in order keeps the edge's
// view of who may see what exact. The view is loaded once per user
// (ListRoutes) and kept from then on by the events.
type topics struct {
	e      *Edge
	mu     sync.Mutex
	byConv map[string]*topic
}

// topic is one group on this edge.
type topic struct {
	t    *topics
	conv string

	mu sync.Mutex
	// members are the local users who are members, with the seqs they see.
	members map[string]span
	// changes are the latest membership changes, to bring a route load
	// that was read before them up to date; changesFloor is the highest
	// seq of a change no longer kept.
	changes      []memberChange
	changesFloor uint64
	events       *stream[queued]
	sub          bus.Subscription
	ready        chan struct{} // closed once the first subscribe attempt ended
	closed       bool
}

// span is which of a group's events a member sees: joined < seq, and
// seq <= left if it left (0: still a member).
type span struct{ joined, left uint64 }

func (s span) sees(seq uint64) bool { return seq > s.joined && (s.left == 0 || seq <= s.left) }

type memberChange struct {
	seq     uint64
	added   []string
	removed string
}

// maxKeptChanges bounds topic.changes.
const maxKeptChanges = 64

// queued is an event with the sessions that must not get it (the sender's,
// which had its answer).
type queued struct {
	ev      *chatv1.Event
	exclude []string
}

func newTopics(e *Edge) *topics { return &topics{e: e, byConv: map[string]*topic{}} }

// get returns the live topic of conv, creating it (unsubscribed) if need
// be; created says so. Its lock is held on return.
func (ts *topics) get(conv string) (t *topic, created bool) {
	for {
		ts.mu.Lock()
		t = ts.byConv[conv]
		if t == nil {
			t = &topic{t: ts, conv: conv, members: map[string]span{}, ready: make(chan struct{})}
			t.events = newStream(&t.mu, streamHooks[queued]{
				seq:    func(q queued) uint64 { return q.ev.GetSeq() },
				apply:  t.apply,
				read:   t.read,
				giveUp: t.giveUp,
				closed: func() bool { return t.closed },
			})
			ts.byConv[conv] = t
			created = true
		}
		ts.mu.Unlock()
		t.mu.Lock()
		if !t.closed {
			return t, created
		}
		t.mu.Unlock() // closed meanwhile: make a new one
	}
}

func (ts *topics) lookup(conv string) *topic {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.byConv[conv]
}

// join adds a loaded membership of user: joined is its join seq and last
// the group's last seq when it was read. It reports false if the topic has
// moved on past what it can reconcile, and the membership must be read
// again. The returned topic must be waited on (subscribed) before the
// user's session opens.
func (ts *topics) join(conv, user string, joined, last uint64) (*topic, bool) {
	t, created := ts.get(conv)
	defer t.mu.Unlock()
	if created {
		// It knows no membership change up to last.
		t.events.order.next = last + 1
		t.changesFloor = last
		go t.subscribe()
	}
	sp, member := span{joined: joined}, true
	if done := t.events.order.next - 1; done > last {
		// The topic applied events the load did not see: replay their
		// membership changes for this user.
		if last < t.changesFloor {
			return t, false
		}
		for _, c := range t.changes {
			if c.seq <= last || c.seq > done {
				continue
			}
			if slices.Contains(c.added, user) {
				sp, member = span{joined: c.seq - 1}, true
			}
			if c.removed == user {
				member = false
			}
		}
	}
	if member && ts.e.routes.link(user, conv) {
		t.members[user] = sp
	}
	t.closeIfEmptyLocked()
	return t, true
}

// adopt takes a group event that makes user a member, from the user's own
// channel: this edge may not be subscribed to the group yet.
func (ts *topics) adopt(user string, env *busv1.Envelope) {
	evs := env.GetPush().GetEvents()
	t, created := ts.get(evs[0].GetConversationId())
	defer t.mu.Unlock()
	if created {
		// Start from this event: the user's earlier history is not theirs.
		t.events.order.next = evs[0].GetSeq()
		t.changesFloor = evs[0].GetSeq() - 1
		go t.subscribe()
	}
	for _, ev := range evs {
		t.events.offer(queued{ev: ev, exclude: env.GetExcludeSessionIds()})
	}
	t.closeIfEmptyLocked()
}

// leave drops user from the group: its route r ended (its last session
// here). A session that opened meanwhile has a new route whose membership
// stays.
func (ts *topics) leave(r *userRoute, conv string) {
	t := ts.lookup(conv)
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ts.e.routes.lookup(r.user) == nil {
		delete(t.members, r.user)
	}
	t.closeIfEmptyLocked()
}

// onEnvelope handles a message on the group's channel.
func (ts *topics) onEnvelope(conv string, env *busv1.Envelope) {
	t := ts.lookup(conv)
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	push := env.GetPush()
	if len(push.GetEvents()) == 0 {
		t.deliverEphemeral(env)
		return
	}
	for _, ev := range push.GetEvents() {
		t.events.offer(queued{ev: ev, exclude: env.GetExcludeSessionIds()})
	}
	t.closeIfEmptyLocked()
}

// catchUp reads what the topic may have missed (its subscription was
// interrupted or is new).
func (ts *topics) catchUp(conv string) {
	if t := ts.lookup(conv); t != nil {
		t.mu.Lock()
		t.events.requestCatchUp()
		t.mu.Unlock()
	}
}

// apply delivers events in seq order, keeping membership as they change it.
func (t *topic) apply(qs []queued) {
	for _, q := range qs {
		ev := q.ev
		removed := t.applyMembership(ev)
		pp, err := newPendingPush(&edgev1.Push{Events: []*chatv1.Event{ev}})
		if err != nil {
			t.t.e.log.Error("edge: encode push", "conversation", t.conv, "seq", ev.GetSeq(), "err", err)
			continue
		}
		for user, sp := range t.members {
			if sp.sees(ev.GetSeq()) {
				t.t.e.hub.forUser(user, func(s *session) {
					if !slices.Contains(q.exclude, s.id) {
						s.enqueuePush(pp)
					}
				})
			}
		}
		// A removed member saw its removal; nothing after.
		if removed != "" {
			if _, ok := t.members[removed]; ok {
				delete(t.members, removed)
				t.t.e.routes.unlink(removed, t.conv)
			}
		}
	}
}

// applyMembership records what ev changes and returns a removed member.
func (t *topic) applyMembership(ev *chatv1.Event) (removed string) {
	var c memberChange
	switch k := ev.GetKind().(type) {
	case *chatv1.Event_ConversationCreated:
		c.added = k.ConversationCreated.GetMemberUserIds()
		for _, u := range c.added {
			if t.t.e.routes.link(u, t.conv) {
				t.members[u] = span{}
			}
		}
	case *chatv1.Event_MembersAdded:
		c.added = k.MembersAdded.GetUserIds()
		for _, u := range c.added {
			if t.t.e.routes.link(u, t.conv) {
				t.members[u] = span{joined: ev.GetSeq() - 1}
			}
		}
	case *chatv1.Event_MemberRemoved:
		c.removed = k.MemberRemoved.GetUserId()
		if sp, ok := t.members[c.removed]; ok {
			sp.left = ev.GetSeq()
			t.members[c.removed] = sp
		}
	default:
		return ""
	}
	c.seq = ev.GetSeq()
	if len(t.changes) == maxKeptChanges {
		t.changesFloor = t.changes[0].seq
		t.changes = slices.Delete(t.changes, 0, 1)
	}
	t.changes = append(t.changes, c)
	return c.removed
}

// deliverEphemeral pushes typing or read markers to current members.
func (t *topic) deliverEphemeral(env *busv1.Envelope) {
	pp, err := newPendingPush(env.GetPush())
	if err != nil {
		t.t.e.log.Error("edge: encode push", "conversation", t.conv, "err", err)
		return
	}
	for user, sp := range t.members {
		if sp.left != 0 || slices.Contains(env.GetExcludeUserIds(), user) {
			continue
		}
		t.t.e.hub.forUser(user, func(s *session) {
			if !slices.Contains(env.GetExcludeSessionIds(), s.id) {
				s.enqueuePush(pp)
			}
		})
	}
}

func (t *topic) read(from, to uint64, done func([]queued, bool, error)) {
	go func() {
		res, err := t.t.e.reads.do(readReq{id: t.conv, from: from, to: to})
		qs := make([]queued, len(res.events))
		for i, ev := range res.events {
			qs[i] = queued{ev: ev}
		}
		done(qs, res.more, err)
	}()
}

// giveUp asks every local member's sessions to sync.
func (t *topic) giveUp() {
	t.t.e.log.Warn("edge: cannot read a group's missing events; its members' sessions sync", "conversation", t.conv)
	for user := range t.members {
		t.t.e.requestSync(user)
	}
}

// subscribe subscribes to the group's channel, retrying while the bus
// fails, then catches up on what was published before it took effect.
func (t *topic) subscribe() {
	channel := bus.ConversationChannel(t.conv)
	delay := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		sub, err := t.t.e.subs.do(channel)
		t.mu.Lock()
		if attempt == 0 {
			close(t.ready)
		}
		switch {
		case err == nil && t.closed:
			t.mu.Unlock()
			_ = sub.Close()
			return
		case err == nil:
			t.sub = sub
			t.events.requestCatchUp()
			t.mu.Unlock()
			return
		case t.closed:
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		t.t.e.log.Warn("edge: subscribe to a group, retrying", "conversation", t.conv, "err", err)
		select {
		case <-time.After(delay):
		case <-t.t.e.stop:
			return
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// wait returns once the topic's first subscribe attempt ended, or ctx.
func (t *topic) wait(ctx context.Context) {
	select {
	case <-t.ready:
	case <-ctx.Done():
	}
}

// closeIfEmptyLocked drops a topic no local user is a member of.
func (t *topic) closeIfEmptyLocked() {
	if len(t.members) > 0 || t.closed {
		return
	}
	t.closed = true
	t.t.mu.Lock()
	if t.t.byConv[t.conv] == t {
		delete(t.t.byConv, t.conv)
	}
	t.t.mu.Unlock()
	if t.sub != nil {
		_ = t.sub.Close()
		t.sub = nil
	}
}
