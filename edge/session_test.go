package edge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

func hello(version uint32, token string) *edgev1.ClientFrame {
	return &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Hello{Hello: &edgev1.Hello{ProtocolVersion: version, AccessToken: token}}}
}

func TestHelloFailures(t *testing.T) {
	tests := []struct {
		name  string
		first *edgev1.ClientFrame // nil: the client closes its side
		code  Code
	}{
		{"ping first", &edgev1.ClientFrame{Id: 1, Kind: &edgev1.ClientFrame_Ping{Ping: &edgev1.Ping{}}}, CodeUnauthenticated},
		{"command first", &edgev1.ClientFrame{Id: 1, Kind: &edgev1.ClientFrame_SendMessage{SendMessage: &chatv1.SendMessageRequest{}}}, CodeUnauthenticated},
		{"empty frame first", &edgev1.ClientFrame{}, CodeUnauthenticated},
		{"stream closed before hello", nil, CodeUnauthenticated},
		{"bad token", hello(1, "forged"), CodeUnauthenticated},
		{"no token", hello(1, ""), CodeUnauthenticated},
		{"protocol version 2", hello(2, "tok:u1:d1"), CodeFailedPrecondition},
		{"protocol version unset", hello(0, "tok:u1:d1"), CodeFailedPrecondition},
	}
	te := newTestEdge(t, testConfig())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := te.dial(t, 8)
			if tt.first == nil {
				close(c.conn.in)
			} else {
				c.send(tt.first)
			}
			err := c.wait()
			if got := codeOf(err); got != tt.code {
				t.Fatalf("stream ended with %v, want code %v", err, tt.code)
			}
			if len(c.conn.out) != 0 {
				t.Fatalf("server sent %v before failing", <-c.conn.out)
			}
		})
	}
	if all := te.hub.all(); len(all) != 0 {
		t.Fatalf("%d sessions left in the hub", len(all))
	}
}

func TestHelloTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.HelloTimeout = 30 * time.Millisecond
	te := newTestEdge(t, cfg)
	c := te.dial(t, 8)
	if err := c.wait(); codeOf(err) != CodeDeadlineExceeded {
		t.Fatalf("got %v, want deadline_exceeded", err)
	}
}

func TestWelcomeRegistersSession(t *testing.T) {
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	w := c.welcome
	if w.GetSessionId() == "" || w.GetEdgeId() != "edge-test" || w.GetProtocolVersion() != 1 ||
		w.GetHeartbeatInterval().AsDuration() != 25*time.Second || w.GetSessionTimeout().AsDuration() != 60*time.Second ||
		w.GetMaxFrameBytes() != 64<<10 {
		t.Fatalf("unexpected welcome %v", w)
	}
	// Registered before the Welcome was sent.
	if !te.registry.isLive(w.GetSessionId()) {
		t.Fatal("session not registered when the Welcome arrived")
	}
	s := te.hub.get(w.GetSessionId())
	if s == nil || s.ident != (auth.Identity{UserID: "u1", DeviceID: "d1", SessionID: w.GetSessionId()}) || s.loginTime.IsZero() {
		t.Fatalf("session map entry %+v", s)
	}

	close(c.conn.in) // the client ends the stream
	if err := c.wait(); err != nil {
		t.Fatalf("clean end returned %v", err)
	}
	if te.registry.isLive(w.GetSessionId()) || te.hub.get(w.GetSessionId()) != nil {
		t.Fatal("session still registered after it ended")
	}
}

func TestRegistryFailureRefusesSession(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.registry.fail = true
	c := te.dial(t, 8)
	c.send(hello(1, "tok:u1:d1"))
	if err := c.wait(); codeOf(err) != CodeUnavailable {
		t.Fatalf("got %v, want unavailable", err)
	}
}

func TestPingPong(t *testing.T) {
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	for _, id := range []uint64{0, 1, 42} {
		if before := c.ping(id); len(before) != 0 {
			t.Fatalf("unexpected frames before pong %d: %v", id, before)
		}
	}
}

func TestCommandsForwarded(t *testing.T) {
	tests := []struct {
		method string
		frame  *edgev1.ClientFrame
		check  func(*edgev1.Result) bool
	}{
		{"SendMessage", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_SendMessage{SendMessage: &chatv1.SendMessageRequest{ConversationId: "c1", ClientMsgId: "m1"}}},
			func(r *edgev1.Result) bool { return r.GetSendMessage().GetMessage().GetClientMsgId() == "m1" }},
		{"Sync", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Sync{Sync: &chatv1.SyncRequest{Cursor: "c1"}}},
			func(r *edgev1.Result) bool { return r.GetSync().GetNextCursor() == "next" }},
		{"MarkRead", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_MarkRead{MarkRead: &chatv1.MarkReadRequest{ConversationId: "c1"}}},
			func(r *edgev1.Result) bool { return r.GetMarkRead().GetUnreadCount() == 1 }},
		{"SendTyping", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_SendTyping{SendTyping: &chatv1.SendTypingRequest{ConversationId: "c1"}}},
			func(r *edgev1.Result) bool { return r.GetSendTyping() != nil }},
		{"AddReaction", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_AddReaction{AddReaction: &chatv1.AddReactionRequest{ConversationId: "c1"}}},
			func(r *edgev1.Result) bool { return r.GetAddReaction().GetEvent().GetSeq() == 8 }},
		{"RemoveReaction", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_RemoveReaction{RemoveReaction: &chatv1.RemoveReactionRequest{ConversationId: "c1"}}},
			func(r *edgev1.Result) bool { return r.GetRemoveReaction() != nil }},
		{"EditMessage", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_EditMessage{EditMessage: &chatv1.EditMessageRequest{ConversationId: "c1", MessageId: "x"}}},
			func(r *edgev1.Result) bool { return r.GetEditMessage().GetMessage().GetMessageId() == "x" }},
		{"DeleteMessagesForMe", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_DeleteMessagesForMe{DeleteMessagesForMe: &chatv1.DeleteMessagesForMeRequest{ConversationId: "c1"}}},
			func(r *edgev1.Result) bool { return r.GetDeleteMessagesForMe().GetUserEvent().GetSeq() == 3 }},
		{"RecallMessage", &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_RecallMessage{RecallMessage: &chatv1.RecallMessageRequest{ConversationId: "c1"}}},
			func(r *edgev1.Result) bool { return r.GetRecallMessage().GetEvent().GetSeq() == 9 }},
	}
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	for i, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			c.t = t
			id := uint64(100 + i)
			tt.frame.Id = id
			c.send(tt.frame)
			f := c.recv()
			if f.GetId() != id || f.GetResult() == nil || !tt.check(f.GetResult()) {
				t.Fatalf("answer %v", f)
			}
			calls := te.messages.called()
			last := calls[len(calls)-1]
			want := call{tt.method, "c1", auth.Identity{UserID: "u1", DeviceID: "d1", SessionID: c.welcome.GetSessionId()}, true}
			if last != want {
				t.Fatalf("service saw %+v, want %+v", last, want)
			}
		})
	}
}

func TestCommandErrors(t *testing.T) {
	send := func(id uint64, conversation string) *edgev1.ClientFrame {
		return &edgev1.ClientFrame{Id: id, Kind: &edgev1.ClientFrame_SendMessage{SendMessage: &chatv1.SendMessageRequest{ConversationId: conversation}}}
	}
	tests := []struct {
		name    string
		frame   *edgev1.ClientFrame
		id      uint64
		code    string
		message string
	}{
		{"service error keeps its code", send(1, "missing"), 1, "not_found", "conversation not found"},
		{"plain error is internal, without detail", send(2, "broken"), 2, "internal", "edge: command failed"},
		{"a lost connection to a service is unavailable", send(5, "reset"), 5, "unavailable", "edge: command: temporarily unavailable, retry"},
		{"command without id", send(0, "c1"), 0, "invalid_argument", "a command needs a non-zero id"},
		{"unknown frame kind", &edgev1.ClientFrame{Id: 3}, 3, "unimplemented", "unknown frame kind"},
		{"second hello", &edgev1.ClientFrame{Id: 4, Kind: &edgev1.ClientFrame_Hello{Hello: &edgev1.Hello{}}}, 4, "failed_precondition", "the session already said hello"},
	}
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.send(tt.frame)
			f := c.recv()
			e := f.GetError()
			if f.GetId() != tt.id || e.GetCode() != tt.code || e.GetMessage() != tt.message {
				t.Fatalf("answer %v, want error %d %s %q", f, tt.id, tt.code, tt.message)
			}
			// The session stays open.
			c.ping(99)
		})
	}
}

// A failed presence snapshot reads the same as a failed command, whether
// asked for in a frame or by the unary call of a push-only session.
func TestPresenceSnapshotErrors(t *testing.T) {
	tests := []struct {
		user    string
		code    Code
		message string
	}{
		{"reset", CodeUnavailable, "edge: presence snapshot: temporarily unavailable, retry"},
		{"broken", CodeInternal, "edge: presence snapshot failed"},
	}
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	caller := auth.Identity{UserID: "u1", DeviceID: "d1"}
	for i, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			c.t = t
			sub := &edgev1.PresenceSubscription{AddUserIds: []string{tt.user}}
			_, err := te.UpdatePresenceSubscription(t.Context(), caller, c.welcome.GetSessionId(), sub)
			if e := new(Error); !errors.As(err, &e) || e.Code != tt.code || e.Message() != tt.message {
				t.Fatalf("unary call failed with %v, want %v: %s", err, tt.code, tt.message)
			}
			id := uint64(i + 1)
			c.send(&edgev1.ClientFrame{Id: id, Kind: &edgev1.ClientFrame_PresenceSubscription{PresenceSubscription: sub}})
			f := c.recv()
			if e := f.GetError(); f.GetId() != id || e.GetCode() != tt.code.String() || e.GetMessage() != tt.message {
				t.Fatalf("command answered %v, want error %d %v %q", f, id, tt.code, tt.message)
			}
		})
	}
}
func TestUnknownKindFromNewerProtocol(t *testing.T) {
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	// Field 99 is a kind this edge does not know: it decodes to no kind.
	raw := []byte{0x08, 0x05, 0x9a, 0x06, 0x00} // id=5, field 99 (bytes) empty
	f := &edgev1.ClientFrame{}
	if err := proto.Unmarshal(raw, f); err != nil {
		t.Fatal(err)
	}
	c.send(f)
	got := c.recv()
	if got.GetId() != 5 || got.GetError().GetCode() != "unimplemented" {
		t.Fatalf("answer %v", got)
	}
	c.ping(6)
}

func TestCommandsKeepOrderWithoutBlockingReads(t *testing.T) {
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	send := func(id uint64, conversation string) {
		c.send(&edgev1.ClientFrame{Id: id, Kind: &edgev1.ClientFrame_SendMessage{SendMessage: &chatv1.SendMessageRequest{ConversationId: conversation}}})
	}
	send(1, "block")
	for id := uint64(2); id <= 5; id++ {
		send(id, fmt.Sprint("c", id))
	}
	// The first command is stuck in the service; pings still get answers.
	if before := c.ping(50); len(before) != 0 {
		t.Fatalf("frames before pong: %v", before)
	}
	close(te.messages.release)
	for id := uint64(1); id <= 5; id++ {
		if f := c.recv(); f.GetId() != id || f.GetResult() == nil {
			t.Fatalf("answer %v, want result %d", f, id)
		}
	}
	var order []string
	for _, cl := range te.messages.called() {
		order = append(order, cl.conversation)
	}
	if want := []string{"block", "c2", "c3", "c4", "c5"}; !slices.Equal(order, want) {
		t.Fatalf("service saw %v, want %v", order, want)
	}
}

func TestCommandQueueLimit(t *testing.T) {
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	c.send(&edgev1.ClientFrame{Id: 1, Kind: &edgev1.ClientFrame_Sync{Sync: &chatv1.SyncRequest{Cursor: "block"}}})
	waitUntil(t, "the blocking command to start", func() bool { return len(te.messages.called()) == 1 })
	for id := uint64(2); id <= maxPendingCommands+2; id++ {
		c.send(&edgev1.ClientFrame{Id: id, Kind: &edgev1.ClientFrame_Sync{Sync: &chatv1.SyncRequest{}}})
	}
	f := c.recv()
	if f.GetId() != maxPendingCommands+2 || f.GetError().GetCode() != "resource_exhausted" {
		t.Fatalf("answer %v, want resource_exhausted for the command past the limit", f)
	}
	close(te.messages.release)
	for id := uint64(1); id <= maxPendingCommands+1; id++ {
		if f := c.recv(); f.GetId() != id || f.GetResult() == nil {
			t.Fatalf("answer %v, want result %d", f, id)
		}
	}
}

func TestPresenceSubscription(t *testing.T) {
	te := newTestEdge(t, testConfig())
	c := te.connect(t, "tok:u1:d1")
	subscribe := func(id uint64, add, remove []string) *edgev1.ServerFrame {
		c.send(&edgev1.ClientFrame{Id: id, Kind: &edgev1.ClientFrame_PresenceSubscription{
			PresenceSubscription: &edgev1.PresenceSubscription{AddUserIds: add, RemoveUserIds: remove}}})
		return c.recv()
	}
	f := subscribe(1, []string{"a", "b", "a", ""}, nil)
	var got []string
	for _, p := range f.GetResult().GetPresenceSnapshot().GetPresences() {
		got = append(got, p.GetUserId())
	}
	if f.GetId() != 1 || !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("answer %v", f)
	}

	many := make([]string, maxPresenceSubscriptions-1)
	for i := range many {
		many[i] = fmt.Sprint("user-", i)
	}
	if f := subscribe(2, many, nil); f.GetError().GetCode() != "resource_exhausted" {
		t.Fatalf("answer %v, want resource_exhausted past %d users", f, maxPresenceSubscriptions)
	}
	// Removing one makes room; the snapshot is looked up in batches.
	f = subscribe(3, many, []string{"a"})
	if n := len(f.GetResult().GetPresenceSnapshot().GetPresences()); n != len(many) {
		t.Fatalf("snapshot of %d users, want %d (answer error %v)", n, len(many), f.GetError())
	}
	s := te.hub.get(c.welcome.GetSessionId())
	s.mu.Lock()
	n := len(s.presenceSubs)
	s.mu.Unlock()
	if n != maxPresenceSubscriptions {
		t.Fatalf("session follows %d users, want %d", n, maxPresenceSubscriptions)
	}
}

func TestSessionTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.SessionTimeout = 150 * time.Millisecond
	te := newTestEdge(t, cfg)
	te.run(t)
	alive := te.connect(t, "tok:u1:d1")
	silent := te.connect(t, "tok:u2:d1")
	// alive pings more often than the timeout; silent says nothing.
	deadline := time.Now().Add(3 * cfg.SessionTimeout)
	for i := uint64(1); time.Now().Before(deadline); i++ {
		alive.ping(i)
		time.Sleep(10 * time.Millisecond)
	}
	if err := silent.wait(); codeOf(err) != CodeDeadlineExceeded {
		t.Fatalf("silent session ended with %v, want deadline_exceeded", err)
	}
	alive.ping(1000)
}

func TestShutdownSendsGoaway(t *testing.T) {
	te := newTestEdge(t, testConfig())
	runErr := make(chan error, 1)
	go func() { runErr <- te.Run(context.Background()) }()
	clients := []*client{te.connect(t, "tok:u1:d1"), te.connect(t, "tok:u2:d1")}

	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	if err := te.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if f := c.recv(); f.GetGoaway() == nil {
			t.Fatalf("got %v, want goaway", f)
		}
		if err := c.wait(); err != nil {
			t.Fatalf("stream ended with %v after goaway, want a clean end", err)
		}
		if te.registry.isLive(c.welcome.GetSessionId()) {
			t.Fatal("session still registered after shutdown")
		}
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"u1", "u2"} {
		if te.bus.subscribed(bus.UserChannel(u)) {
			t.Fatalf("bus subscription of %s left open", u)
		}
	}
	late := te.dial(t, 8)
	late.send(hello(1, "tok:u3:d1"))
	if err := late.wait(); codeOf(err) != CodeUnavailable {
		t.Fatalf("session during drain: %v, want unavailable", err)
	}
}

func TestRenewBatchesAllSessions(t *testing.T) {
	cfg := testConfig()
	cfg.RenewInterval = 20 * time.Millisecond
	te := newTestEdge(t, cfg)
	a := te.connect(t, "tok:u1:d1")
	b := te.connect(t, "tok:u2:d1")
	te.run(t)
	want := []string{a.welcome.GetSessionId(), b.welcome.GetSessionId()}
	slices.Sort(want)
	waitUntil(t, "a renewal", func() bool {
		te.registry.mu.Lock()
		defer te.registry.mu.Unlock()
		for _, ids := range te.registry.renewals {
			ids = slices.Sorted(slices.Values(ids))
			if slices.Equal(ids, want) {
				return true
			}
		}
		return false
	})
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EdgeID == "" || cfg.HeartbeatInterval != 25*time.Second || cfg.SessionTimeout != time.Minute ||
		cfg.AckTimeout != 10*time.Second || cfg.MaxResends != 3 || cfg.QueueLimit != 1024 ||
		cfg.MaxFrameBytes != 64<<10 || cfg.RenewInterval != 20*time.Second || cfg.CommandTimeout != 10*time.Second ||
		cfg.HelloTimeout != 5*time.Second || cfg.MaxPendingHellos != 1000 || cfg.MaxPendingHellosPerConn != 100 {
		t.Fatalf("defaults %+v", cfg)
	}
	if _, err := (Config{AckTimeout: -1, QueueLimit: -1}).withDefaults(); err == nil {
		t.Fatal("negative values accepted")
	}
	if _, err := New(Config{}, Deps{}, nil); err == nil {
		t.Fatal("missing deps accepted")
	}
}

func TestPresenceChangesReachFollowers(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.run(t)
	follower := te.connect(t, "tok:u1:d1")
	blocked := te.connect(t, "tok:u2:d1")
	for i, c := range []*client{follower, blocked} {
		c.send(&edgev1.ClientFrame{Id: uint64(i + 1), Kind: &edgev1.ClientFrame_PresenceSubscription{
			PresenceSubscription: &edgev1.PresenceSubscription{AddUserIds: []string{"star"}}}})
		if f := c.recv(); f.GetResult().GetPresenceSnapshot() == nil {
			t.Fatalf("answer %v", f)
		}
	}
	if !te.bus.subscribed(bus.PresenceChannel("star")) {
		t.Fatal("the edge does not listen to the followed user's channel")
	}
	// A user the caller may not see is answered hidden and not followed.
	follower.send(&edgev1.ClientFrame{Id: 3, Kind: &edgev1.ClientFrame_PresenceSubscription{
		PresenceSubscription: &edgev1.PresenceSubscription{AddUserIds: []string{"hidden-one"}}}})
	if f := follower.recv(); !f.GetResult().GetPresenceSnapshot().GetPresences()[0].GetHidden() {
		t.Fatalf("answer %v, want hidden", f)
	}
	if te.bus.subscribed(bus.PresenceChannel("hidden-one")) {
		t.Fatal("the edge follows a user the caller may not see")
	}
	change := &busv1.PresenceChange{
		Presence:          &presencev1.UserPresence{UserId: "star", Status: presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE},
		HiddenFromUserIds: []string{"u2"},
	}
	payload, err := proto.Marshal(change)
	if err != nil {
		t.Fatal(err)
	}
	te.bus.publishRaw(bus.PresenceChannel("star"), payload)
	if p := follower.recv().GetPush(); len(p.GetPresence()) != 1 || p.GetPushId() != 0 {
		t.Fatalf("follower got %v, want one ephemeral presence push", p)
	}
	if frames := blocked.ping(9); len(frames) != 0 {
		t.Fatalf("a user the changed user blocked got %v", frames)
	}
	// When the last follower leaves, the edge stops listening.
	for _, c := range []*client{follower, blocked} {
		c.send(&edgev1.ClientFrame{Id: 5, Kind: &edgev1.ClientFrame_PresenceSubscription{
			PresenceSubscription: &edgev1.PresenceSubscription{RemoveUserIds: []string{"star"}}}})
		c.recv()
	}
	if te.bus.subscribed(bus.PresenceChannel("star")) {
		t.Fatal("the edge still listens after every follower left")
	}
}
