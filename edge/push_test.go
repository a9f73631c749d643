package edge

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wagglechat/waggle/auth"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// pushTo publishes push on each user's channel.
func (te *testEdge) pushTo(t testing.TB, push *edgev1.Push, users ...string) {
	t.Helper()
	te.toUsers(t, &busv1.Envelope{Push: push}, users...)
}

func TestPushRoutingAndExclusion(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.run(t)
	phone := te.connect(t, "tok:u1:phone")
	laptop := te.connect(t, "tok:u1:laptop")
	other := te.connect(t, "tok:u2:d1")

	// The sender's own session (phone) is excluded.
	te.toUsers(t, &busv1.Envelope{Push: messagePush("c1", 1), ExcludeSessionIds: []string{phone.welcome.GetSessionId()}}, "u1", "nobody-here")
	te.pushTo(t, messagePush("c1", 2), "u1")

	for _, tc := range []struct {
		name string
		c    *client
		want [][]uint64 // seqs of each push, in order
	}{
		{"excluded session", phone, [][]uint64{{2}}},
		{"other device", laptop, [][]uint64{{1}, {2}}},
		{"other user", other, nil},
	} {
		var got [][]uint64
		for _, f := range tc.c.ping(7) {
			got = append(got, seqsOf(f.GetPush()))
		}
		// The two pushes may have been merged into one frame.
		flat := slices.Concat(got...)
		if !slices.Equal(flat, slices.Concat(tc.want...)) {
			t.Errorf("%s got pushes %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPendingPushesMergeIntoOneFrame(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.run(t)
	c := te.connectBuffered(t, "tok:u1:d1", 0) // every Send waits for the reader

	te.pushTo(t, messagePush("c1", 1), "u1")
	// The writer is now blocked writing the first push; queue three more.
	waitUntil(t, "the writer to block", func() bool { return c.conn.sends.Load() == 2 })
	te.pushTo(t, messagePush("c1", 2), "u1")
	te.pushTo(t, &edgev1.Push{Typing: []*chatv1.TypingEvent{{ConversationId: "c1", UserId: "u2", Typing: true}}}, "u1")
	te.pushTo(t, messagePush("c2", 1, 2), "u1")

	first := c.recv().GetPush()
	if first.GetPushId() != 1 || !slices.Equal(seqsOf(first), []uint64{1}) {
		t.Fatalf("first push %v", first)
	}
	merged := c.recv().GetPush()
	if merged.GetPushId() != 2 || !slices.Equal(seqsOf(merged), []uint64{2, 1, 2}) || len(merged.GetTyping()) != 1 {
		t.Fatalf("merged push %v, want push_id 2 with seqs [2 1 2] and the typing event", merged)
	}
	if merged.GetEvents()[1].GetConversationId() != "c2" {
		t.Fatalf("merged events out of order: %v", merged.GetEvents())
	}
}

func TestEphemeralPushHasNoIDAndIsNotResent(t *testing.T) {
	cfg := testConfig()
	cfg.AckTimeout = 20 * time.Millisecond
	te := newTestEdge(t, cfg)
	te.run(t)
	c := te.connect(t, "tok:u1:d1")
	te.pushTo(t, &edgev1.Push{Typing: []*chatv1.TypingEvent{{ConversationId: "c1", UserId: "u2", Typing: true}}}, "u1")
	if p := c.recv().GetPush(); p == nil || p.GetPushId() != 0 {
		t.Fatalf("typing push %v, want push_id 0", p)
	}
	time.Sleep(5 * cfg.AckTimeout)
	if before := c.ping(1); len(before) != 0 {
		t.Fatalf("ephemeral push resent: %v", before)
	}
	s := te.hub.get(c.welcome.GetSessionId())
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	if held != 0 {
		t.Fatalf("session holds %d pushes after an ephemeral one", held)
	}
}

func TestCumulativeAckReportsDeliveries(t *testing.T) {
	cfg := testConfig()
	cfg.DeliveryFlushInterval = 10 * time.Millisecond
	te := newTestEdge(t, cfg)
	te.run(t)
	c := te.connect(t, "tok:u1:d1")
	pushes := []*edgev1.Push{messagePush("c1", 1), messagePush("c1", 2, 3), messagePush("c2", 5)}
	for i, p := range pushes {
		te.pushTo(t, p, "u1")
		if got := c.recv().GetPush(); got.GetPushId() != uint64(i+1) {
			t.Fatalf("push %v, want push_id %d", got, i+1)
		}
	}
	s := te.hub.get(c.welcome.GetSessionId())
	window := func() []uint64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		var ids []uint64
		for _, w := range s.window {
			ids = append(ids, w.id)
		}
		return ids
	}

	c.ack(2) // acknowledges pushes 1 and 2
	c.ping(10)
	if got := window(); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("window after ack 2: %v", got)
	}
	waitUntil(t, "delivery report", func() bool { return len(te.deliveries.reported()) == 1 })
	if a := te.deliveries.reported()[0]; a.GetUserId() != "u1" || a.GetDeviceId() != "d1" ||
		a.GetConversationId() != "c1" || a.GetSeq() != 3 {
		t.Fatalf("reported %v, want u1/d1 c1 up to seq 3", a)
	}

	c.ack(1) // stale: changes nothing
	c.ack(99)
	c.ping(11)
	if got := window(); len(got) != 0 {
		t.Fatalf("window after ack 99: %v", got)
	}
	waitUntil(t, "second report", func() bool { return len(te.deliveries.reported()) == 2 })
	if a := te.deliveries.reported()[1]; a.GetConversationId() != "c2" || a.GetSeq() != 5 {
		t.Fatalf("reported %v, want c2 up to seq 5", a)
	}
}

func TestResendThenGiveUp(t *testing.T) {
	cfg := testConfig()
	cfg.AckTimeout = 40 * time.Millisecond
	cfg.MaxResends = 2
	te := newTestEdge(t, cfg)
	te.run(t)
	c := te.connect(t, "tok:u1:d1")
	start := time.Now()
	te.pushTo(t, messagePush("c1", 1), "u1")
	for i := range cfg.MaxResends + 1 {
		p := c.recv().GetPush()
		if p.GetPushId() != 1 || !slices.Equal(seqsOf(p), []uint64{1}) {
			t.Fatalf("send %d: %v, want push 1 again", i, p)
		}
	}
	err := c.wait()
	if codeOf(err) != CodeDeadlineExceeded {
		t.Fatalf("session ended with %v, want deadline_exceeded", err)
	}
	if elapsed := time.Since(start); elapsed < cfg.AckTimeout*time.Duration(cfg.MaxResends+1) {
		t.Fatalf("gave up after %v, before %d ack timeouts", elapsed, cfg.MaxResends+1)
	}
}

func TestAckStopsResends(t *testing.T) {
	cfg := testConfig()
	cfg.AckTimeout = 30 * time.Millisecond
	te := newTestEdge(t, cfg)
	te.run(t)
	c := te.connect(t, "tok:u1:d1")
	te.pushTo(t, messagePush("c1", 1), "u1")
	if p := c.recv().GetPush(); p.GetPushId() != 1 {
		t.Fatalf("push %v", p)
	}
	c.ack(1)
	c.ping(2)
	time.Sleep(5 * cfg.AckTimeout)
	if before := c.ping(1); len(before) != 0 {
		t.Fatalf("acknowledged push resent: %v", before)
	}
}

func TestQueueOverflowClosesOnlySlowSession(t *testing.T) {
	cfg := testConfig()
	cfg.QueueLimit = 4
	te := newTestEdge(t, cfg)
	te.run(t)
	slow := te.connectBuffered(t, "tok:u1:d1", 0) // never reads
	fast := te.connect(t, "tok:u2:d1")
	for seq := uint64(1); seq <= 6; seq++ {
		te.pushTo(t, messagePush("c1", seq), "u1", "u2")
		if p := fast.recv().GetPush(); !slices.Equal(seqsOf(p), []uint64{seq}) {
			t.Fatalf("fast session got %v", p)
		}
		fast.ack(seq)
		fast.ping(seq) // the ack is handled before the next push
	}
	// The slow writer is stuck in Send; the stream is reset after
	// CloseTimeout and the session ends as too slow.
	if err := slow.wait(); codeOf(err) != CodeResourceExhausted {
		t.Fatalf("slow session ended with %v, want resource_exhausted", err)
	}
	fast.ping(1)
}

func TestCloseDevices(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.run(t)
	phone := te.connect(t, "tok:u1:phone")
	laptop := te.connect(t, "tok:u1:laptop")
	te.toUsers(t, &busv1.Envelope{CloseDevices: []*busv1.DeviceRef{{UserId: "u1", DeviceId: "phone"}}}, "u1")
	if f := phone.recv(); f.GetGoaway() == nil {
		t.Fatalf("got %v, want goaway", f)
	}
	if err := phone.wait(); codeOf(err) != CodeUnauthenticated {
		t.Fatalf("logged-out session ended with %v, want unauthenticated", err)
	}
	laptop.ping(1)
	if te.registry.isLive(phone.welcome.GetSessionId()) {
		t.Fatal("closed session still registered")
	}
}

func TestSubscribeSessionWithUnaryAcks(t *testing.T) {
	cfg := testConfig()
	cfg.SessionTimeout = 200 * time.Millisecond
	te := newTestEdge(t, cfg)
	te.run(t)
	conn := newMemConn(16)
	done := make(chan error, 1)
	go func() {
		done <- te.ServeSubscribe(conn, &edgev1.Hello{ProtocolVersion: 1, AccessToken: "tok:u1:web"})
		close(conn.ended)
	}()
	welcome := (<-conn.out).GetWelcome()
	if welcome == nil {
		t.Fatal("no welcome")
	}
	me := auth.Identity{UserID: "u1", DeviceID: "web"}
	sid := welcome.GetSessionId()

	te.pushTo(t, messagePush("c1", 1), "u1")
	if p := (<-conn.out).GetPush(); p.GetPushId() != 1 {
		t.Fatalf("push %v", p)
	}
	for _, tc := range []struct {
		name   string
		caller auth.Identity
		sid    string
		code   Code
	}{
		{"someone else", auth.Identity{UserID: "u2", DeviceID: "web"}, sid, CodeNotFound},
		{"unknown session", me, "no-such-session", CodeNotFound},
		{"owner", me, sid, 0},
	} {
		if err := te.Ack(tc.caller, tc.sid, 1); codeOf(err) != tc.code {
			t.Errorf("%s: Ack returned %v, want code %v", tc.name, err, tc.code)
		}
	}
	snap, err := te.UpdatePresenceSubscription(context.Background(), me, sid, &edgev1.PresenceSubscription{AddUserIds: []string{"u9"}})
	if err != nil || len(snap.GetPresences()) != 1 {
		t.Fatalf("presence snapshot %v, %v", snap, err)
	}
	// Heartbeats (push id 0) keep it alive well past SessionTimeout.
	for range 10 {
		time.Sleep(cfg.SessionTimeout / 4)
		if err := te.Ack(me, sid, 0); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	// Then silence ends it.
	select {
	case err := <-done:
		if codeOf(err) != CodeDeadlineExceeded {
			t.Fatalf("ended with %v, want deadline_exceeded", err)
		}
	case <-time.After(waitTime):
		t.Fatal("silent subscribe session not closed")
	}
}
