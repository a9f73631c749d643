package client

import (
	"context"
	"maps"
	"slices"
	"time"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// maxKnownPositions bounds the positions one sync request carries.
const maxKnownPositions = 500

// userStream keys the user's own event sequence among the conversations'
// (no conversation id is empty).
const userStream = ""

// item is one sequenced change the app applies in order: a conversation
// event, or one of the user's own events.
type item struct {
	key  string // conversation id, or userStream
	seq  uint64
	conv *chatv1.Event
	user *chatv1.UserEvent
}

func convItem(ev *chatv1.Event) item {
	return item{key: ev.GetConversationId(), seq: ev.GetSeq(), conv: ev}
}

func userItem(ev *chatv1.UserEvent) item { return item{key: userStream, seq: ev.GetSeq(), user: ev} }

// gap is one open gap in a sequence: the items that arrived ahead of the
// missing one, by seq. Its timer judges only this gap, not a later one of
// the same sequence.
type gap struct{ items map[uint64]item }

// applyPush applies a push's events in order (or holds them for gap
// repair), then counts it for the session's next ack.
func (c *Client) applyPush(s *session, p *edgev1.Push) {
	c.mu.Lock()
	for _, ev := range p.GetEvents() {
		c.offer(s, convItem(ev))
	}
	for _, ev := range p.GetUserEvents() {
		c.offer(s, userItem(ev))
	}
	c.mu.Unlock()
	if p.GetPushId() > 0 {
		s.acks.add(p.GetPushId())
	}
	if c.cfg.OnPush != nil {
		c.cfg.OnPush(p)
	}
}

// position returns what the client holds of a sequence.
func (c *Client) position(key string) (seq uint64, known bool) {
	if key == userStream {
		return c.state.UserSeq, true
	}
	seq, known = c.state.Seqs[key]
	return seq, known
}

// starts reports whether it can begin an unknown conversation: its creation,
// or the event that added this user.
func (c *Client) starts(it item) bool {
	if it.seq == 1 {
		return true
	}
	added := it.conv.GetMembersAdded()
	return added != nil && slices.Contains(added.GetUserIds(), c.userID)
}

// offer applies a live item (pushed, or the answer to our own send) if it is
// the next one of its sequence. An item beyond the next is held for GapWait:
// pushes published by different senders can overtake each other on the way,
// and the missing one usually follows at once. If it does not, the held
// items are dropped and a sync fetches everything (see gapExpired).
// c.mu is held.
func (c *Client) offer(s *session, it item) {
	have, known := c.position(it.key)
	switch {
	case known && it.seq <= have:
		c.stats.Duplicates++
	case it.seq == have+1 || (!known && c.starts(it)):
		c.apply(it)
		if it.key != userStream {
			c.dirty[it.key] = true
		}
		c.releaseHeld(it.key)
	default:
		g := c.held[it.key]
		if g == nil {
			g = &gap{items: map[uint64]item{}}
			c.held[it.key] = g
			time.AfterFunc(c.cfg.GapWait, func() { c.gapExpired(s, it.key, g) })
		}
		g.items[it.seq] = it
	}
}

// releaseHeld applies held items of key that now follow in order. c.mu is
// held.
func (c *Client) releaseHeld(key string) {
	g := c.held[key]
	for g != nil && len(g.items) > 0 {
		have, _ := c.position(key)
		it, ok := g.items[have+1]
		if !ok {
			return
		}
		delete(g.items, have+1)
		c.apply(it)
		c.stats.Reordered++
	}
	delete(c.held, key)
}

// gapExpired runs GapWait after gap g opened in a sequence: if it is still
// open, the bus lost something, and a sync repairs it. A gap closed since
// is done with, even if a newer one of the sequence is open: that one has
// its own timer.
func (c *Client) gapExpired(s *session, key string, g *gap) {
	c.mu.Lock()
	if s != c.session {
		c.mu.Unlock()
		return // that session is gone; the next one syncs on connect
	}
	open := c.held[key] == g && len(g.items) > 0
	if open && c.sending(key) {
		// The missing seq may be our own message whose answer is late:
		// wait for it rather than sync a whole page for one event.
		c.mu.Unlock()
		time.AfterFunc(c.cfg.GapWait, func() { c.gapExpired(s, key, g) })
		return
	}
	if open {
		delete(c.held, key)
		c.stats.Gaps++
	}
	c.mu.Unlock()
	if open {
		c.startSync(s)
	}
}

// sending reports whether a send to conversation conv awaits its answer.
// c.mu is held.
func (c *Client) sending(conv string) bool {
	for _, o := range c.outbox {
		if o.req.GetConversationId() == conv {
			return true
		}
	}
	return false
}

// apply hands it to the app and records its position. c.mu is held.
func (c *Client) apply(it item) {
	if it.key == userStream {
		c.state.UserSeq = it.seq
		c.cfg.OnUserEvent(it.user)
		return
	}
	c.state.Seqs[it.key] = it.seq
	c.cfg.OnEvent(it.conv)
}

// startSync runs a sync from the stored cursor unless one is running, in
// which case that one is repeated when it ends.
func (c *Client) startSync(s *session) {
	c.mu.Lock()
	if s != c.session {
		c.mu.Unlock()
		return // a stale timer or answer of a session that is gone
	}
	if c.syncing {
		c.resync = true
		c.mu.Unlock()
		return
	}
	c.syncing, c.resync = true, false
	cursor := c.state.Cursor
	// Tell the server what pushes already brought, so it is not sent again.
	var known []*chatv1.ConversationPosition
	for conv := range c.dirty {
		// Beyond the cap the server just sends a few events again, which are
		// dropped; the cap keeps the request well inside a frame.
		if len(known) == maxKnownPositions {
			break
		}
		known = append(known, &chatv1.ConversationPosition{ConversationId: conv, Seq: c.state.Seqs[conv]})
	}
	c.dirty = map[string]bool{}
	c.mu.Unlock()
	go c.syncPages(s, cursor, known)
}

func (c *Client) syncPages(s *session, cursor string, known []*chatv1.ConversationPosition) {
	for {
		c.mu.Lock()
		c.stats.Syncs++
		c.mu.Unlock()
		r := <-c.call(s, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Sync{Sync: &chatv1.SyncRequest{
			Cursor: cursor, PageSize: c.cfg.SyncPageSize, KnownPositions: known}}})
		if r.err != nil || r.frame.GetError() != nil {
			c.log.Warn("client: sync failed", "err", r.err, "error", r.frame.GetError())
			c.mu.Lock()
			if s == c.session {
				c.syncing = false
			}
			c.mu.Unlock()
			s.end() // reconnect and sync again
			return
		}
		res := r.frame.GetResult().GetSync()
		c.mu.Lock()
		// Sync is authoritative: it starts where the member may see, so an
		// unknown conversation starts at its first event here.
		for _, it := range syncItems(res) {
			if have, known := c.position(it.key); known && it.seq <= have {
				c.stats.Duplicates++
				continue
			}
			c.apply(it)
			c.releaseHeld(it.key)
		}
		cursor = res.GetNextCursor()
		c.state.Cursor = cursor
		st := State{Cursor: cursor, Seqs: maps.Clone(c.state.Seqs), UserSeq: c.state.UserSeq}
		done := !res.GetHasMore()
		again := done && c.resync
		if done {
			c.syncing = false
		}
		c.mu.Unlock()
		if err := c.cfg.Store.Save(context.Background(), st); err != nil {
			c.log.Warn("client: save state", "err", err)
		}
		if again {
			c.startSync(s)
			return
		}
		if done {
			return
		}
		known = nil // the cursor carries them on to the next page
	}
}

func syncItems(res *chatv1.SyncResponse) []item {
	items := make([]item, 0, len(res.GetEvents())+len(res.GetUserEvents()))
	for _, ev := range res.GetEvents() {
		items = append(items, convItem(ev))
	}
	for _, ev := range res.GetUserEvents() {
		items = append(items, userItem(ev))
	}
	return items
}
