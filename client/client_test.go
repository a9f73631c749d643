package client

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// fakeEdge is the server side of in-memory streams: the test reads what the
// client sent and scripts what it receives.
type fakeEdge struct {
	streams chan *fakeStream
}

func (e *fakeEdge) Dial(context.Context) (Stream, error) {
	s := &fakeStream{in: make(chan *edgev1.ClientFrame, 100), out: make(chan *edgev1.ServerFrame, 100), done: make(chan struct{})}
	e.streams <- s
	return s, nil
}

type fakeStream struct {
	in        chan *edgev1.ClientFrame // client -> edge
	out       chan *edgev1.ServerFrame // edge -> client
	done      chan struct{}
	closeOnce sync.Once
	backlog   []*edgev1.ClientFrame // sent frames not yet matched by expect
}

func (s *fakeStream) Send(f *edgev1.ClientFrame) error {
	select {
	case <-s.done: // a closed stream takes nothing, even with room in s.in
		return io.EOF
	default:
	}
	select {
	case s.in <- f:
		return nil
	case <-s.done:
		return io.EOF
	}
}

func (s *fakeStream) Recv() (*edgev1.ServerFrame, error) {
	select {
	case f := <-s.out:
		return f, nil
	case <-s.done:
		return nil, io.EOF
	}
}

func (s *fakeStream) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

// expect returns the first frame the client sent that satisfies match;
// frames it passes over stay for later expects.
func (s *fakeStream) expect(t *testing.T, what string, match func(*edgev1.ClientFrame) bool) *edgev1.ClientFrame {
	t.Helper()
	for i, f := range s.backlog {
		if match(f) {
			s.backlog = append(s.backlog[:i], s.backlog[i+1:]...)
			return f
		}
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case f := <-s.in:
			if match(f) {
				return f
			}
			s.backlog = append(s.backlog, f)
		case <-timeout:
			t.Fatalf("client never sent %s", what)
		}
	}
}

func isSync(f *edgev1.ClientFrame) bool { return f.GetSync() != nil }

// accept answers Hello and the initial sync (empty, with cursor).
func (s *fakeStream) accept(t *testing.T, cursor string) {
	t.Helper()
	s.expect(t, "hello", func(f *edgev1.ClientFrame) bool { return f.GetHello() != nil })
	s.out <- &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Welcome{Welcome: &edgev1.Welcome{
		SessionId: "s1", HeartbeatInterval: durationpb.New(time.Hour)}}}
	sync := s.expect(t, "the first sync", isSync)
	s.answerSync(sync, cursor)
}

func (s *fakeStream) answerSync(req *edgev1.ClientFrame, cursor string, events ...*chatv1.Event) {
	s.out <- &edgev1.ServerFrame{Id: req.GetId(), Kind: &edgev1.ServerFrame_Result{Result: &edgev1.Result{
		Kind: &edgev1.Result_Sync{Sync: &chatv1.SyncResponse{Events: events, NextCursor: cursor}}}}}
}

func msg(conv string, seq uint64) *chatv1.Event {
	return &chatv1.Event{ConversationId: conv, Seq: seq, Kind: &chatv1.Event_Message{Message: &chatv1.Message{Seq: seq}}}
}

func push(id uint64, evs ...*chatv1.Event) *edgev1.ServerFrame {
	return &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Push{Push: &edgev1.Push{PushId: id, Events: evs}}}
}

type recorder struct {
	mu   sync.Mutex
	seqs map[string][]uint64
}

func (r *recorder) add(ev *chatv1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seqs[ev.GetConversationId()] = append(r.seqs[ev.GetConversationId()], ev.GetSeq())
}

func (r *recorder) get(conv string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs[conv]...)
}

func (r *recorder) waitFor(t *testing.T, conv string, n int) []uint64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.get(conv)) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return r.get(conv)
}

func startClient(t *testing.T, gapWait time.Duration) (*fakeEdge, *recorder, *Client) {
	t.Helper()
	rec := &recorder{seqs: map[string][]uint64{}}
	edge, c, _ := runClient(t, Config{OnEvent: rec.add, GapWait: gapWait})
	return edge, rec, c
}

// runClient runs a client of cfg (by default with a fixed token) on a fake
// edge until stop is called or the test ends.
func runClient(t *testing.T, cfg Config) (edge *fakeEdge, c *Client, stop func()) {
	t.Helper()
	edge = &fakeEdge{streams: make(chan *fakeStream, 4)}
	cfg.Dialers = []Dialer{edge}
	if cfg.Token == nil {
		cfg.Token = func(context.Context) (string, error) { return "tok", nil }
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return edge, c, stop
}

func TestPushesAreAppliedInOrderOnceAndAcked(t *testing.T) {
	edge, rec, c := startClient(t, time.Second)
	s := <-edge.streams
	s.accept(t, "cur-1")
	s.out <- push(1, msg("c", 1), msg("c", 2))
	s.out <- push(2, msg("c", 4)) // early: held until 3 arrives
	s.out <- push(3, msg("c", 3), msg("c", 2))
	if got := rec.waitFor(t, "c", 4); len(got) != 4 || got[0] != 1 || got[3] != 4 {
		t.Fatalf("applied %v, want [1 2 3 4]", got)
	}
	s.expect(t, "the ack of push 3", func(f *edgev1.ClientFrame) bool { return f.GetAck().GetPushId() == 3 })
	st := c.Stats()
	if st.Gaps != 0 || st.Reordered != 1 || st.Duplicates != 1 || st.Syncs != 1 {
		t.Fatalf("stats %+v, want one reordered, one duplicate, no gap, only the first sync", st)
	}
}

func TestAGapThatStaysOpenIsRepairedBySync(t *testing.T) {
	edge, rec, c := startClient(t, 50*time.Millisecond)
	s := <-edge.streams
	s.accept(t, "cur-1")
	s.out <- push(1, msg("c", 1))
	s.out <- push(2, msg("c", 3)) // 2 was lost on the bus
	req := s.expect(t, "a repair sync", isSync)
	if req.GetSync().GetCursor() != "cur-1" {
		t.Fatalf("repair sync from cursor %q, want cur-1", req.GetSync().GetCursor())
	}
	if kp := req.GetSync().GetKnownPositions(); len(kp) != 1 || kp[0].GetSeq() != 1 {
		t.Fatalf("repair sync known positions %v, want c at 1", kp)
	}
	s.answerSync(req, "cur-2", msg("c", 2), msg("c", 3))
	if got := rec.waitFor(t, "c", 3); len(got) != 3 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("applied %v, want [1 2 3]", got)
	}
	if st := c.Stats(); st.Gaps != 1 {
		t.Fatalf("stats %+v, want one gap", st)
	}
}

func TestUnansweredSendIsResentWithItsClientMsgID(t *testing.T) {
	edge, _, c := startClient(t, time.Second)
	s := <-edge.streams
	s.accept(t, "cur-1")
	type result struct {
		m   *chatv1.Message
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := c.Send(context.Background(), "c", &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: "hi"}}})
		done <- result{m, err}
	}()
	first := s.expect(t, "the send", func(f *edgev1.ClientFrame) bool { return f.GetSendMessage() != nil })
	s.Close() // the connection dies before the answer

	s2 := <-edge.streams
	s2.accept(t, "cur-1")
	again := s2.expect(t, "the resend", func(f *edgev1.ClientFrame) bool { return f.GetSendMessage() != nil })
	if again.GetSendMessage().GetClientMsgId() != first.GetSendMessage().GetClientMsgId() {
		t.Fatalf("resent with client_msg_id %q, first was %q", again.GetSendMessage().GetClientMsgId(), first.GetSendMessage().GetClientMsgId())
	}
	s2.out <- &edgev1.ServerFrame{Id: again.GetId(), Kind: &edgev1.ServerFrame_Result{Result: &edgev1.Result{
		Kind: &edgev1.Result_SendMessage{SendMessage: &chatv1.SendMessageResponse{Message: &chatv1.Message{ConversationId: "c", Seq: 1, MessageId: "m1"}}}}}}
	select {
	case r := <-done:
		if r.err != nil || r.m.GetMessageId() != "m1" {
			t.Fatalf("send returned %v, %v", r.m, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("send never returned")
	}
	if st := c.Stats(); st.Resends != 1 || st.Sessions != 2 {
		t.Fatalf("stats %+v, want one resend over two sessions", st)
	}
}

func TestSyncRequiredTriggersSync(t *testing.T) {
	edge, _, _ := startClient(t, time.Second)
	s := <-edge.streams
	s.accept(t, "cur-1")
	s.out <- &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_SyncRequired{SyncRequired: &edgev1.SyncRequired{}}}
	if req := s.expect(t, "a sync after sync_required", isSync); req.GetSync().GetCursor() != "cur-1" {
		t.Fatalf("sync from %q, want cur-1", req.GetSync().GetCursor())
	}
}

// A gap timer of a session that died must not wedge the next session's
// syncs.
func TestStaleGapTimerDoesNotBlockTheNextSession(t *testing.T) {
	edge, _, _ := startClient(t, 30*time.Millisecond)
	s := <-edge.streams
	s.accept(t, "cur-1")
	s.out <- push(1, msg("c", 1))
	s.out <- push(2, msg("c", 3)) // a gap opens; its timer outlives the session
	s.expect(t, "the ack of push 2", func(f *edgev1.ClientFrame) bool { return f.GetAck().GetPushId() == 2 })
	s.Close()
	s2 := <-edge.streams
	s2.accept(t, "cur-2")
	time.Sleep(100 * time.Millisecond) // the old timer has fired by now
	s2.out <- &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_SyncRequired{SyncRequired: &edgev1.SyncRequired{}}}
	s2.expect(t, "a sync on the new session", isSync)
}

// A hole that may be our own message, whose answer is late, is waited for
// rather than synced.
func TestOwnLateAnswerIsNotAGap(t *testing.T) {
	edge, rec, c := startClient(t, 30*time.Millisecond)
	s := <-edge.streams
	s.accept(t, "cur-1")
	s.out <- push(1, msg("c", 1))
	go c.Send(context.Background(), "c", &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: "mine"}}})
	send := s.expect(t, "the send", func(f *edgev1.ClientFrame) bool { return f.GetSendMessage() != nil })
	s.out <- push(2, msg("c", 3)) // someone else's message overtakes our answer
	time.Sleep(150 * time.Millisecond)
	s.out <- &edgev1.ServerFrame{Id: send.GetId(), Kind: &edgev1.ServerFrame_Result{Result: &edgev1.Result{
		Kind: &edgev1.Result_SendMessage{SendMessage: &chatv1.SendMessageResponse{Message: &chatv1.Message{ConversationId: "c", Seq: 2, MessageId: "m2"}}}}}}
	if got := rec.waitFor(t, "c", 3); len(got) != 3 || got[2] != 3 {
		t.Fatalf("applied %v, want [1 2 3]", got)
	}
	if st := c.Stats(); st.Gaps != 0 || st.Syncs != 1 {
		t.Fatalf("stats %+v, want no gap and only the first sync", st)
	}
}

// The timer of a gap that our own late answer closed must not judge the
// next gap, opened later by an ordinary reorder: the sender's devices made
// gap syncs at 10 msg/s while the others made none.
func TestClosedGapsTimerIgnoresTheNextGap(t *testing.T) {
	const gapWait = 600 * time.Millisecond
	edge, rec, c := startClient(t, gapWait)
	s := <-edge.streams
	s.accept(t, "cur-1")
	s.out <- push(1, msg("c", 1))
	go c.Send(context.Background(), "c", &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: "mine"}}})
	send := s.expect(t, "the send", func(f *edgev1.ClientFrame) bool { return f.GetSendMessage() != nil })
	s.out <- push(2, msg("c", 3)) // overtakes our answer: a gap at 2 opens
	time.Sleep(gapWait / 3)
	s.out <- &edgev1.ServerFrame{Id: send.GetId(), Kind: &edgev1.ServerFrame_Result{Result: &edgev1.Result{
		Kind: &edgev1.Result_SendMessage{SendMessage: &chatv1.SendMessageResponse{Message: &chatv1.Message{ConversationId: "c", Seq: 2, MessageId: "m2"}}}}}}
	rec.waitFor(t, "c", 3)
	s.out <- push(3, msg("c", 5)) // another sender's 4 is a little late
	// The first gap's timer fires here (gapWait after it opened), while 4 is
	// still well within its own wait.
	time.Sleep(gapWait * 5 / 6)
	s.out <- push(4, msg("c", 4))
	if got := rec.waitFor(t, "c", 5); len(got) != 5 {
		t.Fatalf("applied %v, want 1 to 5", got)
	}
	time.Sleep(gapWait) // the second gap's timer has fired too
	if st := c.Stats(); st.Gaps != 0 || st.Syncs != 1 {
		t.Fatalf("stats %+v, want no gap and only the first sync", st)
	}
}

// serve answers, on s, Hello and every command (syncs empty), until s closes.
func (s *fakeStream) serve() {
	for {
		var f *edgev1.ClientFrame
		select {
		case f = <-s.in:
		case <-s.done:
			return
		}
		var reply *edgev1.ServerFrame
		switch {
		case f.GetHello() != nil:
			reply = &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Welcome{Welcome: &edgev1.Welcome{
				SessionId: "s2", HeartbeatInterval: durationpb.New(time.Hour)}}}
		case f.GetSync() != nil:
			reply = &edgev1.ServerFrame{Id: f.GetId(), Kind: &edgev1.ServerFrame_Result{Result: &edgev1.Result{
				Kind: &edgev1.Result_Sync{Sync: &chatv1.SyncResponse{NextCursor: "c2"}}}}}
		case f.GetId() != 0:
			reply = &edgev1.ServerFrame{Id: f.GetId(), Kind: &edgev1.ServerFrame_Result{Result: &edgev1.Result{}}}
		default:
			continue
		}
		select {
		case s.out <- reply:
		case <-s.done:
			return
		}
	}
}

func TestCallsRacingATeardownAllReturn(t *testing.T) {
	edge, c, _ := runClient(t, Config{})
	first := <-edge.streams
	first.accept(t, "c1")
	go func() { (<-edge.streams).serve() }()

	const calls = 300
	errs := make(chan error, calls)
	for range calls {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := c.Call(ctx, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_MarkRead{MarkRead: &chatv1.MarkReadRequest{ConversationId: "c", Seq: 1}}})
			errs <- err
		}()
	}
	// Tear the first session down while calls are being sent on it: some
	// are pending, some fail to send, some start after the teardown.
	first.expect(t, "a command", func(f *edgev1.ClientFrame) bool { return f.GetMarkRead() != nil })
	first.Close()

	guard := time.After(30 * time.Second)
	for i := range calls {
		select {
		case err := <-errs:
			if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
				t.Errorf("call ended with %v, want an answer or unavailable", err)
			}
		case <-guard:
			t.Fatalf("%d of %d calls never returned", calls-i, calls)
		}
	}
}
