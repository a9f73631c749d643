package edge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

var errDeviceLoggedOut = errors.New("device logged out")

// onBus handles one bus message. It runs on the bus's delivery goroutine
// for its channel, so it only decodes, orders and enqueues.
func (e *Edge) onBus(channel string, payload []byte) {
	kind, id := bus.ParseChannel(channel)
	if kind == bus.PresenceChannelKind {
		e.watchers.deliver(id, payload)
		return
	}
	env := &busv1.Envelope{}
	if err := proto.Unmarshal(payload, env); err != nil {
		e.log.Warn("edge: undecodable bus envelope", "channel", channel, "bytes", len(payload), "err", err)
		return
	}
	switch kind {
	case bus.ConversationChannelKind:
		e.topics.onEnvelope(id, env)
	case bus.UserChannelKind:
		e.routes.onEnvelope(id, env)
	}
}

// readReq is one range of a stream to read back; readRes its answer.
type readReq struct {
	user     bool // a user's own events; else a conversation's
	id       string
	from, to uint64
}

type readRes struct {
	events     []*chatv1.Event
	userEvents []*chatv1.UserEvent
	more       bool
}

// readRanges is the batcher's call: one ReadEvents for many streams' holes.
func (e *Edge) readRanges(ctx context.Context, reqs []readReq) ([]readRes, error) {
	req := &chatv1.ReadEventsRequest{}
	for _, r := range reqs {
		sr := &chatv1.StreamRange{Id: r.id, FromSeq: r.from, ToSeq: r.to}
		if r.user {
			req.Users = append(req.Users, sr)
		} else {
			req.Conversations = append(req.Conversations, sr)
		}
	}
	res, err := e.deps.Streams.ReadEvents(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(res.GetConversations()) != len(req.Conversations) || len(res.GetUsers()) != len(req.Users) {
		return nil, fmt.Errorf("read events: answered %d+%d ranges of %d+%d", len(res.GetConversations()), len(res.GetUsers()), len(req.Conversations), len(req.Users))
	}
	out := make([]readRes, len(reqs))
	ci, ui := 0, 0
	for i, r := range reqs {
		if r.user {
			u := res.GetUsers()[ui]
			out[i] = readRes{userEvents: u.GetEvents(), more: u.GetMore()}
			ui++
		} else {
			c := res.GetConversations()[ci]
			out[i] = readRes{events: c.GetEvents(), more: c.GetMore()}
			ci++
		}
	}
	e.stats.reads.Add(int64(len(reqs)))
	return out, nil
}

// loadRoutes is the batcher's call: one ListRoutes for many users.
func (e *Edge) loadRoutes(ctx context.Context, users []string) ([]*chatv1.UserRoutes, error) {
	res, err := e.deps.Streams.ListRoutes(ctx, &chatv1.ListRoutesRequest{UserIds: users})
	if err != nil {
		return nil, err
	}
	byUser := make(map[string]*chatv1.UserRoutes, len(res.GetUsers()))
	for _, r := range res.GetUsers() {
		byUser[r.GetUserId()] = r
	}
	out := make([]*chatv1.UserRoutes, len(users))
	for i, u := range users {
		if out[i] = byUser[u]; out[i] == nil {
			out[i] = &chatv1.UserRoutes{UserId: u}
		}
	}
	return out, nil
}

// subscribeChannels is the batcher's call: one Subscribe for many channels.
func (e *Edge) subscribeChannels(ctx context.Context, channels []string) ([]bus.Subscription, error) {
	return e.deps.Bus.Subscribe(ctx, e.onBus, channels...)
}

// resubscribeMargin widens the time a lost connection may have dropped
// messages since: the chat service's clock is not this edge's.
const resubscribeMargin = 10 * time.Second

// Resubscribed repairs what the bus may have lost while some of its
// subscriptions were interrupted (wire it to bus.RedisConfig.OnResubscribe).
// Groups and the users' own events are read back once for all sessions;
// users whose direct conversations changed meanwhile, in ones this edge
// was not following, are told to sync; presence followers get fresh
// snapshots. It also renews every session in the registry at once, since a
// Redis that restarted lost them.
func (e *Edge) Resubscribed(r bus.Resubscribed) {
	var users, presence []string
	for _, ch := range r.Channels {
		switch kind, id := bus.ParseChannel(ch); kind {
		case bus.ConversationChannelKind:
			e.topics.catchUp(id)
		case bus.UserChannelKind:
			if rt := e.routes.lookup(id); rt != nil {
				rt.catchUp()
				users = append(users, id)
			}
		case bus.PresenceChannelKind:
			presence = append(presence, id)
		}
	}
	e.stats.resubscribes.Add(1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.CommandTimeout)
		defer cancel()
		e.renew(ctx)
		e.syncChangedDirects(ctx, users, r.Since.Add(-resubscribeMargin))
		e.watchers.refresh(ctx, presence)
	}()
}

// syncChangedDirects asks the chat service which direct conversations of
// users changed since, and tells the users with one this edge did not
// follow to sync (those it followed were caught up).
func (e *Edge) syncChangedDirects(ctx context.Context, users []string, since time.Time) {
	const batch = 10_000
	for len(users) > 0 {
		n := min(len(users), batch)
		part := users[:n]
		users = users[n:]
		res, err := e.deps.Streams.ListDirectChanges(auth.WithInternal(ctx), &chatv1.ListDirectChangesRequest{UserIds: part, Since: timestamppb.New(since)})
		if err != nil {
			e.log.Warn("edge: list direct changes after a bus interruption; those users sync", "users", n, "err", err)
			for _, u := range part {
				e.syncSoon(u)
			}
			continue
		}
		told := map[string]bool{}
		for _, c := range res.GetChanges() {
			rt := e.routes.lookup(c.GetUserId())
			if rt == nil || told[c.GetUserId()] || rt.follows(c.GetConversationId()) {
				continue
			}
			told[c.GetUserId()] = true
			e.syncSoon(c.GetUserId())
		}
	}
}

// syncSpread spreads the sync_required frames sent after a bus
// interruption: every session syncing at once would be a thundering herd
// on the chat service.
const syncSpread = 2 * time.Second

func (e *Edge) syncSoon(user string) {
	e.stats.syncsRequested.Add(1)
	time.AfterFunc(time.Duration(rand.Int64N(int64(syncSpread))), func() { e.requestSync(user) })
}
