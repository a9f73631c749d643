package client

import (
	"context"
	"maps"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// applyPush applies a push's events in order, then acks it. A gap (a seq
// beyond the next expected one) means the bus lost something: the event is
// dropped and a sync fetches it together with what was missed.
func (c *Client) applyPush(s *session, p *edgev1.Push) {
	c.mu.Lock()
	gap := false
	for _, ev := range p.GetEvents() {
		gap = c.offer(ev) || gap
	}
	c.mu.Unlock()
	if p.GetPushId() > 0 {
		_ = s.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: p.GetPushId()}}})
	}
	if gap {
		c.startSync(s)
	}
}

// offer applies a live event (pushed, or the answer to our own send) if it
// is the next one of its conversation, and reports a gap. c.mu is held.
func (c *Client) offer(ev *chatv1.Event) (gap bool) {
	conv, seq := ev.GetConversationId(), ev.GetSeq()
	have, known := c.state.Seqs[conv]
	switch {
	case known && seq <= have:
		c.stats.Duplicates++
	case seq == have+1 || (!known && seq == 1):
		c.apply(ev)
		c.dirty[conv] = true
	default:
		c.stats.Gaps++
		return true
	}
	return false
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
		}
		cursor = res.GetNextCursor()
		c.state.Cursor = cursor
		if !res.GetHasMore() {
			clear(c.dirty)
		}
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
