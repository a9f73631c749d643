package edge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// routes are the users this edge holds sessions of. Each has a
// subscription to its own channel ("user:<id>"), which carries its own
// events, its direct conversations' events, the group events that make it
// a member, ephemeral pushes for it and logouts, and it is a member of the
// topics of its groups.
type routes struct {
	e      *Edge
	mu     sync.Mutex
	byUser map[string]*userRoute
}

// userRoute is one user's routing on this edge, shared by its sessions.
type userRoute struct {
	r    *routes
	user string

	// Guarded by routes.mu.
	refs   int
	groups map[string]struct{} // topics the user is a member of
	gone   atomic.Bool         // torn down (set under routes.mu)

	ready chan struct{} // closed once loaded
	err   error         // why loading failed; read after ready

	mu      sync.Mutex
	sub     bus.Subscription
	events  *stream[*chatv1.UserEvent]
	directs map[string]*directStream
}

// directStream is a direct conversation's events on a user's channel.
type directStream struct {
	events *stream[queued]
	seen   time.Time // last event, for pruning
}

func newRoutes(e *Edge) *routes { return &routes{e: e, byUser: map[string]*userRoute{}} }

// acquire returns user's route, loading it if it is new: it subscribes to
// the user's channel, reads the user's groups and joins their topics. It
// returns once the route can carry the session's pushes.
func (rs *routes) acquire(ctx context.Context, user string) (*userRoute, error) {
	rs.mu.Lock()
	r := rs.byUser[user]
	if r != nil {
		r.refs++
		rs.mu.Unlock()
		select {
		case <-r.ready:
		case <-ctx.Done():
			rs.release(r)
			return nil, ctx.Err()
		}
		if r.err != nil {
			rs.release(r)
			return nil, r.err
		}
		return r, nil
	}
	r = &userRoute{r: rs, user: user, refs: 1, groups: map[string]struct{}{}, ready: make(chan struct{}), directs: map[string]*directStream{}}
	r.events = newStream(&r.mu, streamHooks[*chatv1.UserEvent]{
		seq:    (*chatv1.UserEvent).GetSeq,
		apply:  r.applyUserEvents,
		read:   r.readUserEvents,
		giveUp: func() { rs.e.requestSync(user) },
		closed: r.isGone,
	})
	rs.byUser[user] = r
	rs.mu.Unlock()
	r.err = r.load(ctx)
	close(r.ready)
	if r.err != nil {
		rs.release(r)
		return nil, r.err
	}
	return r, nil
}

func (r *userRoute) load(ctx context.Context) error {
	e := r.r.e
	// Subscribe first: a group joined after the read below then shows up
	// on the user's channel.
	sub, err := e.subs.do(bus.UserChannel(r.user))
	if err != nil {
		return fmt.Errorf("subscribe to the user's channel: %w", err)
	}
	r.mu.Lock()
	r.sub = sub
	r.mu.Unlock()
	var joined []*topic
	for attempt := 0; ; attempt++ {
		routes, err := e.loads.do(r.user)
		if err != nil {
			return fmt.Errorf("read the user's groups: %w", err)
		}
		r.mu.Lock()
		r.events.learn(routes.GetUserSeq() + 1)
		r.mu.Unlock()
		stale := false
		for _, g := range routes.GetGroups() {
			t, ok := e.topics.join(g.GetConversationId(), r.user, g.GetJoinedSeq(), g.GetLastSeq())
			stale = stale || !ok
			joined = append(joined, t)
		}
		if !stale || attempt == 2 {
			break
		}
	}
	for _, t := range joined {
		t.wait(ctx)
	}
	return nil
}

// release drops a session's hold on its route; the last one tears it down.
func (rs *routes) release(r *userRoute) {
	rs.mu.Lock()
	r.refs--
	if r.refs > 0 {
		rs.mu.Unlock()
		return
	}
	r.gone.Store(true)
	if rs.byUser[r.user] == r {
		delete(rs.byUser, r.user)
	}
	groups := r.groups
	r.groups = nil
	rs.mu.Unlock()
	for conv := range groups {
		rs.e.topics.leave(r, conv)
	}
	r.mu.Lock()
	sub := r.sub
	r.sub = nil
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Close()
	}
}

func (r *userRoute) isGone() bool { return r.gone.Load() }

// link records that user is a member of conv's topic, if the user has a
// route here; topics only keep local users.
func (rs *routes) link(user, conv string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.byUser[user]
	if r == nil {
		return false
	}
	r.groups[conv] = struct{}{}
	return true
}

func (rs *routes) unlink(user, conv string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.byUser[user]; r != nil {
		delete(r.groups, conv)
	}
}

func (rs *routes) lookup(user string) *userRoute {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.byUser[user]
}

// users lists the users with a route here.
func (rs *routes) users() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]string, 0, len(rs.byUser))
	for u := range rs.byUser {
		out = append(out, u)
	}
	return out
}

// onEnvelope handles a message on user's channel.
func (rs *routes) onEnvelope(user string, env *busv1.Envelope) {
	for _, d := range env.GetCloseDevices() {
		rs.e.hub.forUser(d.GetUserId(), func(s *session) {
			if s.ident.DeviceID == d.GetDeviceId() {
				// Unauthenticated, not a plain end: the device must log in
				// again rather than reconnect with its old token.
				s.close(newError(CodeUnauthenticated, errDeviceLoggedOut), "device logged out")
			}
		})
	}
	r := rs.lookup(user)
	push := env.GetPush()
	if r == nil || push == nil {
		return
	}
	switch evs := push.GetEvents(); {
	case len(push.GetUserEvents()) > 0:
		r.mu.Lock()
		for _, ev := range push.GetUserEvents() {
			r.events.offer(ev)
		}
		r.mu.Unlock()
	case len(evs) > 0 && makesMember(evs[0], user):
		rs.e.topics.adopt(user, env)
	case len(evs) > 0:
		r.mu.Lock()
		ds := r.direct(evs[0].GetConversationId())
		ds.seen = time.Now()
		for _, ev := range evs {
			ds.events.offer(queued{ev: ev, exclude: env.GetExcludeSessionIds()})
		}
		r.mu.Unlock()
	default:
		pp, err := newPendingPush(push)
		if err != nil {
			rs.e.log.Error("edge: encode push", "user_id", user, "err", err)
			return
		}
		rs.e.deliverToUser(user, pp, env.GetExcludeSessionIds())
	}
}

// makesMember reports whether ev is a group event that makes user a
// member, which the chat service sends on the user's channel too.
func makesMember(ev *chatv1.Event, user string) bool {
	switch k := ev.GetKind().(type) {
	case *chatv1.Event_ConversationCreated:
		return k.ConversationCreated.GetType() == chatv1.ConversationType_CONVERSATION_TYPE_GROUP &&
			slices.Contains(k.ConversationCreated.GetMemberUserIds(), user)
	case *chatv1.Event_MembersAdded:
		return slices.Contains(k.MembersAdded.GetUserIds(), user)
	}
	return false
}

// direct returns conv's stream on this route, under r.mu.
func (r *userRoute) direct(conv string) *directStream {
	ds := r.directs[conv]
	if ds != nil {
		return ds
	}
	ds = &directStream{}
	e := r.r.e
	ds.events = newStream(&r.mu, streamHooks[queued]{
		seq: func(q queued) uint64 { return q.ev.GetSeq() },
		apply: func(qs []queued) {
			for _, q := range qs {
				pp, err := newPendingPush(&edgev1.Push{Events: []*chatv1.Event{q.ev}})
				if err != nil {
					e.log.Error("edge: encode push", "conversation", conv, "err", err)
					continue
				}
				e.deliverToUser(r.user, pp, q.exclude)
			}
		},
		read: func(from, to uint64, done func([]queued, bool, error)) {
			go func() {
				res, err := e.reads.do(readReq{id: conv, from: from, to: to})
				qs := make([]queued, len(res.events))
				for i, ev := range res.events {
					qs[i] = queued{ev: ev}
				}
				done(qs, res.more, err)
			}()
		},
		giveUp: func() { e.requestSync(r.user) },
		closed: r.isGone,
	})
	r.directs[conv] = ds
	return ds
}

func (r *userRoute) applyUserEvents(evs []*chatv1.UserEvent) {
	pp, err := newPendingPush(&edgev1.Push{UserEvents: evs})
	if err != nil {
		r.r.e.log.Error("edge: encode push", "user_id", r.user, "err", err)
		return
	}
	r.r.e.deliverToUser(r.user, pp, nil)
}

func (r *userRoute) readUserEvents(from, to uint64, done func([]*chatv1.UserEvent, bool, error)) {
	go func() {
		res, err := r.r.e.reads.do(readReq{user: true, id: r.user, from: from, to: to})
		done(res.userEvents, res.more, err)
	}()
}

// catchUp reads what the user's streams may have missed: its own events
// and the direct conversations this edge follows.
func (r *userRoute) catchUp() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events.requestCatchUp()
	for _, ds := range r.directs {
		ds.events.requestCatchUp()
	}
}

// follows reports whether the route has a position in direct conversation
// conv at or before seq, so its catch-up reads the conversation.
func (r *userRoute) follows(conv string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ds := r.directs[conv]
	return ds != nil && ds.events.order.next > 0
}

// directIdle is how long a direct conversation's position is kept without
// events: a later event just starts following it again.
const directIdle = 10 * time.Minute

// prune forgets the positions of direct conversations quiet for a while,
// bounding the memory a chatty user costs.
func (rs *routes) prune(now time.Time) {
	rs.mu.Lock()
	all := make([]*userRoute, 0, len(rs.byUser))
	for _, r := range rs.byUser {
		all = append(all, r)
	}
	rs.mu.Unlock()
	for _, r := range all {
		r.mu.Lock()
		for conv, ds := range r.directs {
			if now.Sub(ds.seen) > directIdle && len(ds.events.order.held) == 0 && !ds.events.reading {
				delete(r.directs, conv)
			}
		}
		r.mu.Unlock()
	}
}

// deliverToUser pushes pp to user's sessions but exclude.
func (e *Edge) deliverToUser(user string, pp pendingPush, exclude []string) {
	e.hub.forUser(user, func(s *session) {
		if !slices.Contains(exclude, s.id) {
			s.enqueuePush(pp)
		}
	})
}

// requestSync tells user's sessions here to sync: a hole in what they were
// pushed could not be repaired by the edge.
func (e *Edge) requestSync(user string) {
	e.hub.forUser(user, func(s *session) {
		s.enqueueControl(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_SyncRequired{SyncRequired: &edgev1.SyncRequired{}}})
	})
}
