package edge

import (
	"fmt"
	"slices"
	"sync"
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
	welcomed   bool // the Welcome is written: pushes may follow
	writing    bool // a writer goroutine is running
	writers    sync.WaitGroup
}

// outItem is an answer frame (pong, result, error) or a push.
type outItem struct {
	frame *edgev1.ServerFrame
	push  pendingPush
}

type sentPush struct {
	id          uint64
	frame       *edgev1.ServerFrame
	count       int // pushes merged into it, counted in held
	sentAt      time.Time
	firstSentAt time.Time
	// positions are the highest conversation events it carries, for
	// delivery reports once acknowledged.
	positions map[string]uint64
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
	s.startWriterLocked()
	s.mu.Unlock()
}

// startWriterLocked starts a writer if there is something to write and
// none is running; s.mu is held. A writer lives only while frames are
// queued, so an idle session costs no goroutine for writing.
func (s *session) startWriterLocked() {
	if s.writing || s.closed || !s.welcomed || (len(s.queue) == 0 && !s.resendDue) {
		return
	}
	s.writing = true
	s.writers.Add(1)
	go s.write()
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

// write is the session's only writer while it runs. It writes everything
// pending, overdue pushes again first, then the queue in order, with each
// run of consecutive pushes merged into as few frames as possible
// (connect-go flushes on every Send), and stops once nothing is left.
func (s *session) write() {
	defer s.writers.Done()
	for {
		s.mu.Lock()
		var frames []*edgev1.ServerFrame
		if !s.closed {
			now := time.Now()
			frames = s.takeQueue(s.takeResends(now), now)
		}
		if len(frames) == 0 {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, f := range frames {
			if err := s.conn.Send(f); err != nil {
				s.close(fmt.Errorf("edge: write frame: %w", err), "")
				s.mu.Lock()
				s.writing = false
				s.mu.Unlock()
				return
			}
		}
	}
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
			(len(run) == 0 || size+len(queue[0].push.body) <= maxMergedPushBytes) {
			p := queue[0].push
			run = append(run, p)
			size += len(p.body)
			durable = durable || p.durable
			queue = queue[1:]
		}
		if !durable {
			s.held -= len(run) // typing and presence are never resent
			frames = append(frames, pushFrame(0, run))
			continue
		}
		s.lastPushID++
		frame := pushFrame(s.lastPushID, run)
		sent := &sentPush{id: s.lastPushID, frame: frame, count: len(run), sentAt: now, firstSentAt: now}
		for _, p := range run {
			if p.conv != "" && p.seq > sent.positions[p.conv] {
				if sent.positions == nil {
					sent.positions = make(map[string]uint64, 1)
				}
				sent.positions[p.conv] = p.seq
			}
		}
		s.window = append(s.window, sent)
		frames = append(frames, frame)
	}
	return frames
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
		for conv, seq := range w.positions {
			positions[conv] = max(positions[conv], seq)
		}
	}
	if len(positions) > 0 {
		s.e.deliveries.add(s.ident, positions)
	}
}
