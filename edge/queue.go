package edge

import (
	"fmt"
	"slices"
	"sync"
	"time"

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
	lastWrite  time.Time // when pushes were last written
}

// outItem is an answer frame (pong, result, error) or a push.
type outItem struct {
	frame *edgev1.ServerFrame
	push  pendingPush
}

type sentPush struct {
	id          uint64
	parts       []pendingPush // merged into it; the frame is assembled again to resend
	sentAt      time.Time
	firstSentAt time.Time
	// positions are the highest conversation events it carries, for
	// delivery reports once acknowledged.
	positions positions
}

// outFrame is one frame the writer sends: a control frame, or pushes
// assembled into a Push with push id id (0: none) when written.
type outFrame struct {
	frame *edgev1.ServerFrame
	id    uint64
	parts []pendingPush
}

// positions are the highest seqs of a few conversations: a frame rarely
// carries more than one or two, so a slice beats a map.
type positions []position

type position struct {
	conv string
	seq  uint64
}

// raise records conv at seq unless a higher seq is recorded; empty conv
// (a push without events) is ignored.
func (ps positions) raise(conv string, seq uint64) positions {
	if conv == "" {
		return ps
	}
	for i := range ps {
		if ps[i].conv == conv {
			ps[i].seq = max(ps[i].seq, seq)
			return ps
		}
	}
	return append(ps, position{conv, seq})
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

func (s *session) enqueueError(id uint64, code Code, msg string) {
	s.enqueueControl(errorFrame(id, code, msg))
}

func errorFrame(id uint64, code Code, msg string) *edgev1.ServerFrame {
	return &edgev1.ServerFrame{Id: id, Kind: &edgev1.ServerFrame_Error{Error: &edgev1.Error{
		Code:    code.String(),
		Message: msg,
	}}}
}

func (s *session) closeSlow() {
	s.close(errorf(CodeResourceExhausted,
		"session too slow: %d frames pending or unacknowledged; reconnect and sync", s.e.cfg.QueueLimit), "")
}

// write is the session's only writer while it runs. It writes everything
// pending, overdue pushes again first, then the queue in order, with each
// run of consecutive pushes merged into as few frames as possible
// (connect-go flushes on every Send), and stops once nothing is left.
func (s *session) write() {
	defer s.writers.Done()
	var out []outFrame
	for {
		s.mu.Lock()
		if wait := s.coalesceLocked(); wait > 0 {
			s.mu.Unlock()
			time.Sleep(wait)
			s.mu.Lock()
		}
		out = out[:0]
		if !s.closed {
			now := time.Now()
			out = s.takeQueue(s.takeResends(out, now), now)
			if len(out) > 0 {
				s.lastWrite = now
			}
		}
		if len(out) == 0 {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, f := range out {
			if err := s.send(f); err != nil {
				s.close(fmt.Errorf("edge: write frame: %w", err), "")
				s.mu.Lock()
				s.writing = false
				s.mu.Unlock()
				return
			}
		}
		clear(out)
	}
}

// send writes one frame; pushes are assembled into a pooled buffer, which
// the transport has copied by the time Send returns.
func (s *session) send(f outFrame) error {
	if f.frame != nil {
		return s.conn.Send(f.frame)
	}
	b := framePool.Get().(*frameBuf)
	defer framePool.Put(b)
	return s.conn.Send(b.assemble(f.id, f.parts))
}

// coalesceLocked is how long the writer waits before taking the queue, so
// pushes arriving within WriteInterval of the last write share a frame.
// Answers, pongs and resends never wait.
func (s *session) coalesceLocked() time.Duration {
	interval := s.e.cfg.WriteInterval
	if interval == 0 || s.resendDue || s.closed {
		return 0
	}
	for _, it := range s.queue {
		if it.frame != nil {
			return 0
		}
	}
	return time.Until(s.lastWrite.Add(interval))
}

// takeResends returns the whole window for resending once its oldest push
// is overdue: acks are cumulative, so a client that missed one push has
// likely missed the ones after it. Resending all keeps sentAt
// non-decreasing along the window, which the sweeper relies on.
func (s *session) takeResends(out []outFrame, now time.Time) []outFrame {
	if !s.resendDue {
		return out
	}
	s.resendDue = false
	for _, w := range s.window {
		w.sentAt = now
		out = append(out, outFrame{id: w.id, parts: w.parts})
	}
	return out
}

// takeQueue empties the queue into frames, merging each run of pushes and
// giving each merged frame with state a push id and a place in the window.
// The queue's array is kept for the next items.
func (s *session) takeQueue(out []outFrame, now time.Time) []outFrame {
	q := s.queue
	for i := 0; i < len(q); {
		if q[i].frame != nil {
			out = append(out, outFrame{frame: q[i].frame})
			s.held--
			i++
			continue
		}
		j, size, durable := i, 0, false
		for j < len(q) && q[j].frame == nil && (j == i || size+len(q[j].push.body) <= maxMergedPushBytes) {
			size += len(q[j].push.body)
			durable = durable || q[j].push.durable
			j++
		}
		parts := make([]pendingPush, j-i)
		for k := range parts {
			parts[k] = q[i+k].push
		}
		i = j
		if !durable {
			s.held -= len(parts) // typing and presence are never resent
			out = append(out, outFrame{parts: parts})
			continue
		}
		s.lastPushID++
		sent := &sentPush{id: s.lastPushID, parts: parts, sentAt: now, firstSentAt: now}
		for _, p := range parts {
			sent.positions = sent.positions.raise(p.conv, p.seq)
		}
		s.window = append(s.window, sent)
		out = append(out, outFrame{id: sent.id, parts: parts})
	}
	clear(q)
	s.queue = q[:0]
	return out
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
		s.held -= len(w.parts)
	}
	s.mu.Unlock()

	var ps positions
	for _, w := range acked {
		for _, p := range w.positions {
			ps = ps.raise(p.conv, p.seq)
		}
	}
	if len(ps) > 0 {
		s.e.deliveries.add(s.ident, ps)
	}
}
