package edge

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// maxMergedPushBytes stops merging pending pushes into one frame once it
// holds this much, so a backlog goes out in several frames of sane size.
const maxMergedPushBytes = 256 << 10

// outbox is a session's outgoing side, guarded by session.mu: one bounded
// FIFO queue drained by the session's single writer, and the window of
// written pushes awaiting an Ack.
type outbox struct {
	queue      []outItem
	window     []*sentPush // ascending push ids, non-decreasing sentAt
	held       int         // queued items plus pushes in the window
	lastPushID uint64
	resendDue  bool // set by the sweeper: the window's oldest push is overdue
}

// outItem is an answer frame (pong, result, error) or a push.
type outItem struct {
	frame *edgev1.ServerFrame
	push  pendingPush
}

// pendingPush is a Push from the bus, shared by every session it is routed
// to: read-only.
type pendingPush struct {
	push    *edgev1.Push
	size    int  // encoded size, for merge limits
	durable bool // carries state that must be acknowledged
}

type sentPush struct {
	id          uint64
	frame       *edgev1.ServerFrame
	count       int // pushes merged into it, counted in held
	sentAt      time.Time
	firstSentAt time.Time
}

func (s *session) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// enqueuePush queues p for the writer.
func (s *session) enqueuePush(p pendingPush) { s.enqueue(outItem{push: p}) }

func (s *session) enqueueControl(f *edgev1.ServerFrame) { s.enqueue(outItem{frame: f}) }

// enqueue queues an item, or closes the session if it holds QueueLimit
// items already.
func (s *session) enqueue(it outItem) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.held >= s.e.cfg.QueueLimit {
		s.mu.Unlock()
		s.closeSlow()
		return
	}
	s.queue = append(s.queue, it)
	s.held++
	s.mu.Unlock()
	s.poke()
}

func (s *session) enqueueError(id uint64, code connect.Code, msg string) {
	s.enqueueControl(errorFrame(id, code, msg))
}

func errorFrame(id uint64, code connect.Code, msg string) *edgev1.ServerFrame {
	return &edgev1.ServerFrame{Id: id, Kind: &edgev1.ServerFrame_Error{Error: &edgev1.Error{
		Code:    code.String(),
		Message: msg,
	}}}
}

func (s *session) closeSlow() {
	s.close(connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"session too slow: %d frames pending or unacknowledged; reconnect and sync", s.e.cfg.QueueLimit)), "")
}

// writeLoop is the session's only writer. Each wake-up it writes everything
// pending: overdue pushes again, then the queue in order, with each run of
// consecutive pushes merged into as few frames as possible (connect-go
// flushes on every Send).
func (s *session) writeLoop() {
	for {
		select {
		case <-s.ctx.Done():
			// Closed deliberately, or the transport's context ended.
			s.close(connect.NewError(connect.CodeCanceled, errors.New("stream ended")), "")
			s.writeGoaway()
			return
		case <-s.wake:
			if s.ctx.Err() != nil {
				continue
			}
			if err := s.flush(time.Now()); err != nil {
				s.close(fmt.Errorf("edge: write frame: %w", err), "")
				return
			}
		}
	}
}

func (s *session) writeGoaway() {
	s.mu.Lock()
	reason := s.goaway
	s.mu.Unlock()
	if reason == "" {
		return
	}
	// Best effort: the stream ends right after either way.
	_ = s.conn.Send(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Goaway{Goaway: &edgev1.Goaway{Reason: reason}}})
}

func (s *session) flush(now time.Time) error {
	s.mu.Lock()
	frames := s.takeResends(now)
	frames = s.takeQueue(frames, now)
	s.mu.Unlock()
	for _, f := range frames {
		if err := s.conn.Send(f); err != nil {
			return err
		}
	}
	return nil
}

// takeResends returns the whole window for resending once its oldest push
// is overdue: acks are cumulative, so a client that missed one push has
// likely missed the ones after it. Resending all keeps sentAt
// non-decreasing along the window, which the sweeper relies on.
func (s *session) takeResends(now time.Time) []*edgev1.ServerFrame {
	if !s.resendDue {
		return nil
	}
	s.resendDue = false
	frames := make([]*edgev1.ServerFrame, len(s.window))
	for i, w := range s.window {
		w.sentAt = now
		frames[i] = w.frame
	}
	return frames
}

// takeQueue empties the queue into frames, merging each run of pushes and
// giving each merged frame with state a push id and a place in the window.
func (s *session) takeQueue(frames []*edgev1.ServerFrame, now time.Time) []*edgev1.ServerFrame {
	queue := s.queue
	s.queue = nil
	for len(queue) > 0 {
		if queue[0].frame != nil {
			frames = append(frames, queue[0].frame)
			s.held--
			queue = queue[1:]
			continue
		}
		var run []pendingPush
		size, durable := 0, false
		for len(queue) > 0 && queue[0].frame == nil &&
			(len(run) == 0 || size+queue[0].push.size <= maxMergedPushBytes) {
			p := queue[0].push
			run = append(run, p)
			size += p.size
			durable = durable || p.durable
			queue = queue[1:]
		}
		push := mergePushes(run)
		frame := &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Push{Push: push}}
		if durable {
			s.lastPushID++
			push.PushId = s.lastPushID
			s.window = append(s.window, &sentPush{id: push.PushId, frame: frame, count: len(run), sentAt: now, firstSentAt: now})
		} else {
			s.held -= len(run) // typing and presence are never resent
		}
		frames = append(frames, frame)
	}
	return frames
}

// mergePushes concatenates pushes, in order, into one new Push. The shared
// inputs are never modified.
func mergePushes(ps []pendingPush) *edgev1.Push {
	if len(ps) == 1 {
		p := ps[0].push
		return &edgev1.Push{
			Events:      p.GetEvents(),
			UserEvents:  p.GetUserEvents(),
			ReadMarkers: p.GetReadMarkers(),
			Unread:      p.GetUnread(),
			Typing:      p.GetTyping(),
			Presence:    p.GetPresence(),
		}
	}
	m := &edgev1.Push{}
	for _, pp := range ps {
		p := pp.push
		m.Events = append(m.Events, p.GetEvents()...)
		m.UserEvents = append(m.UserEvents, p.GetUserEvents()...)
		m.ReadMarkers = append(m.ReadMarkers, p.GetReadMarkers()...)
		m.Unread = append(m.Unread, p.GetUnread()...)
		m.Typing = append(m.Typing, p.GetTyping()...)
		m.Presence = append(m.Presence, p.GetPresence()...)
	}
	return m
}

// isDurable reports whether p carries state the client must acknowledge.
func isDurable(p *edgev1.Push) bool {
	return len(p.GetEvents()) > 0 || len(p.GetUserEvents()) > 0 ||
		len(p.GetReadMarkers()) > 0 || len(p.GetUnread()) > 0
}

// ack drops every push up to and including pushID from the window (acks are
// cumulative) and reports the acknowledged events for delivery state.
func (s *session) ack(pushID uint64) {
	if pushID == 0 {
		return
	}
	s.mu.Lock()
	n := 0
	for n < len(s.window) && s.window[n].id <= pushID {
		n++
	}
	if n == 0 {
		s.mu.Unlock()
		return
	}
	acked := slices.Clone(s.window[:n])
	s.window = slices.Delete(s.window, 0, n)
	for _, w := range acked {
		s.held -= w.count
	}
	s.mu.Unlock()

	positions := make(map[string]uint64)
	for _, w := range acked {
		for _, ev := range w.frame.GetPush().GetEvents() {
			if conv := ev.GetConversationId(); conv != "" && ev.GetSeq() > positions[conv] {
				positions[conv] = ev.GetSeq()
			}
		}
	}
	if len(positions) > 0 {
		s.e.deliveries.add(s.ident, positions)
	}
}
