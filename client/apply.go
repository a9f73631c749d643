package client

import (
	"context"
	"maps"
	"time"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// applyPush applies a push's events in order, then acks it.
func (c *Client) applyPush(s *session, p *edgev1.Push) {
	c.mu.Lock()
	for _, ev := range p.GetEvents() {
		c.offer(s, ev)
	}
	c.mu.Unlock()
	if p.GetPushId() > 0 {
		_ = s.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: p.GetPushId()}}})
	}
}

// offer applies a live event (pushed, or the answer to our own send) if it
// is the next one of its conversation. An event beyond the next is held for
// GapWait: events published by different senders can overtake each other on
// the way, and the missing one usually follows at once. If it does not, the
// held events are dropped and a sync fetches everything (see gapExpired).
// c.mu is held.
func (c *Client) offer(s *session, ev *chatv1.Event) {
	conv, seq := ev.GetConversationId(), ev.GetSeq()
	have, known := c.state.Seqs[conv]
	switch {
	case known && seq <= have:
		c.stats.Duplicates++
	case seq == have+1 || (!known && seq == 1):
		c.apply(ev)
		c.dirty[conv] = true
		c.releaseHeld(conv)
	default:
		if c.held[conv] == nil {
			c.held[conv] = map[uint64]*chatv1.Event{}
			time.AfterFunc(c.cfg.GapWait, func() { c.gapExpired(s, conv) })
		}
		c.held[conv][seq] = ev
	}
}

// releaseHeld applies held events of conv that now follow in order. c.mu is
// held.
func (c *Client) releaseHeld(conv string) {
	held := c.held[conv]
	for len(held) > 0 {
		next := c.state.Seqs[conv] + 1
		ev, ok := held[next]
		if !ok {
			return
		}
		delete(held, next)
		c.apply(ev)
		c.stats.Reordered++
	}
	delete(c.held, conv)
}

// gapExpired runs GapWait after a gap opened in conv: if it is still open,
// the bus lost something, and a sync repairs it.
func (c *Client) gapExpired(s *session, conv string) {
	c.mu.Lock()
	open := len(c.held[conv]) > 0
	delete(c.held, conv)
	if open {
		c.stats.Gaps++
	}
	c.mu.Unlock()
	if open {
		c.startSync(s)
	}
}

// apply hands ev to the app and records its position. c.mu is held.
func (c *Client) apply(ev *chatv1.Event) {
	c.state.Seqs[ev.GetConversationId()] = ev.GetSeq()
	c.cfg.OnEvent(ev)
}

// startSync runs a sync from the stored cursor unless one is running, in
// which case that one is repeated when it ends.
func (c *Client) startSync(s *session) {
	c.mu.Lock()
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
			_ = s.stream.Close() // reconnect and sync again
			return
		}
		res := r.frame.GetResult().GetSync()
		c.mu.Lock()
		for _, ev := range res.GetEvents() {
			have, ok := c.state.Seqs[ev.GetConversationId()]
			if ok && ev.GetSeq() <= have {
				c.stats.Duplicates++
				continue
			}
			// Sync is authoritative: it starts where the member may see.
			c.apply(ev)
			c.releaseHeld(ev.GetConversationId())
		}
		cursor = res.GetNextCursor()
		c.state.Cursor = cursor
		st := State{Cursor: cursor, Seqs: maps.Clone(c.state.Seqs)}
		again := !res.GetHasMore() && c.resync
		done := !res.GetHasMore()
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
		known = nil
	}
}
