package edge

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// watchers routes presence changes to the sessions following a user. The
// edge subscribes to a user's channel while at least one of its sessions
// follows that user, so presence traffic reaches only edges that need it.
type watchers struct {
	e     *Edge
	mu    sync.Mutex
	users map[string]*watch
}

type watch struct {
	sessions map[*session]struct{}
	sub      bus.Subscription // nil until the subscription is confirmed
	ready    chan struct{}    // closed once the subscription is set up, or failed
}

func newWatchers(e *Edge) *watchers { return &watchers{e: e, users: map[string]*watch{}} }

// follow makes s receive the presence changes of users. It returns once
// each user's subscription is set up, by s or by a session before it, so
// a snapshot read after it misses no change.
func (w *watchers) follow(s *session, users []string) {
	type created struct {
		user string
		wt   *watch
	}
	var subscribe []created
	var awaited []chan struct{}
	w.mu.Lock()
	for _, u := range users {
		wt := w.users[u]
		if wt == nil {
			wt = &watch{sessions: map[*session]struct{}{}, ready: make(chan struct{})}
			w.users[u] = wt
			subscribe = append(subscribe, created{u, wt})
		} else {
			awaited = append(awaited, wt.ready)
		}
		wt.sessions[s] = struct{}{}
	}
	w.mu.Unlock()
	for _, c := range subscribe {
		sub, err := w.e.subs.do(bus.PresenceChannel(c.user))
		// Only this call's entry: every follower may have left meanwhile
		// and another session made a new one.
		w.mu.Lock()
		mine := w.users[c.user] == c.wt
		switch {
		case err != nil && mine:
			// Followers keep their snapshot but miss live changes of the
			// user; dropping the entry lets the next follow retry.
			delete(w.users, c.user)
		case err == nil && mine:
			c.wt.sub, sub = sub, nil
		}
		w.mu.Unlock()
		close(c.wt.ready)
		if err != nil {
			w.e.log.Warn("edge: subscribe to presence", "user_id", c.user, "err", err)
		}
		if sub != nil { // every follower left meanwhile
			_ = sub.Close()
		}
	}
	for _, ready := range awaited {
		<-ready
	}
}

// unfollow stops s receiving the presence changes of users.
func (w *watchers) unfollow(s *session, users []string) {
	var closing []bus.Subscription
	w.mu.Lock()
	for _, u := range users {
		wt := w.users[u]
		if wt == nil {
			continue
		}
		delete(wt.sessions, s)
		if len(wt.sessions) == 0 {
			delete(w.users, u)
			if wt.sub != nil {
				closing = append(closing, wt.sub)
			}
		}
	}
	w.mu.Unlock()
	for _, sub := range closing {
		_ = sub.Close()
	}
}

// deliver pushes a change of user to the sessions following them, except
// users the changed user blocked. It runs on the bus goroutine: decode and
// enqueue only.
func (w *watchers) deliver(user string, payload []byte) {
	change := &busv1.PresenceChange{}
	if err := proto.Unmarshal(payload, change); err != nil {
		w.e.log.Warn("edge: undecodable presence change", "user_id", user, "err", err)
		return
	}
	p, err := newPendingPush(&edgev1.Push{Presence: []*presencev1.UserPresence{change.GetPresence()}})
	if err != nil {
		w.e.log.Error("edge: encode presence push", "user_id", user, "err", err)
		return
	}
	w.mu.Lock()
	var targets []*session
	if wt := w.users[user]; wt != nil {
		for s := range wt.sessions {
			if !slices.Contains(change.GetHiddenFromUserIds(), s.ident.UserID) {
				targets = append(targets, s)
			}
		}
	}
	w.mu.Unlock()
	for _, s := range targets {
		s.enqueuePush(p)
	}
}

// refresh pushes fresh presence of users to the sessions following them,
// as each session may see it: changes published while the bus was
// interrupted are lost.
func (w *watchers) refresh(ctx context.Context, users []string) {
	bySession := map[*session][]string{}
	w.mu.Lock()
	for _, u := range users {
		if wt := w.users[u]; wt != nil {
			for s := range wt.sessions {
				bySession[s] = append(bySession[s], u)
			}
		}
	}
	w.mu.Unlock()
	for s, users := range bySession {
		for start := 0; start < len(users); start += maxPresenceLookup {
			batch := users[start:min(start+maxPresenceLookup, len(users))]
			res, err := w.e.deps.Presence.GetPresence(s.callContextFrom(ctx), &presencev1.GetPresenceRequest{UserIds: batch})
			if err != nil {
				w.e.log.Warn("edge: refresh presence after a bus interruption", "session_id", s.id, "err", err)
				continue
			}
			var visible []*presencev1.UserPresence
			for _, p := range res.GetPresences() {
				if !p.GetHidden() {
					visible = append(visible, p)
				}
			}
			if len(visible) == 0 {
				continue
			}
			if pp, err := newPendingPush(&edgev1.Push{Presence: visible}); err == nil {
				s.enqueuePush(pp)
			}
		}
	}
}
