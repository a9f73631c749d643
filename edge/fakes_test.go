package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// Small fakes of the edge's dependencies. The real services are exercised
// by the end-to-end tests; these only let the session core be driven.

const waitTime = 5 * time.Second

// fakeTokens accepts "tok:<user>:<device>".
type fakeTokens struct{}

func (fakeTokens) Verify(token string) (auth.Identity, error) {
	parts := strings.Split(token, ":")
	if len(parts) != 3 || parts[0] != "tok" || parts[1] == "" {
		return auth.Identity{}, errors.New("token is not valid")
	}
	return auth.Identity{UserID: parts[1], DeviceID: parts[2]}, nil
}

type call struct {
	method       string
	conversation string
	ident        auth.Identity
	internal     bool
}

// fakeMessages answers every command. Conversation ids steer it: "missing"
// fails with not_found, "broken" with a plain error, "reset" as a call to
// the chat service over a connection reset, "block" waits for
// release (or the call's end).
type fakeMessages struct {
	release chan struct{}

	mu    sync.Mutex
	calls []call
}

func newFakeMessages() *fakeMessages { return &fakeMessages{release: make(chan struct{})} }

func (f *fakeMessages) called() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeMessages) do(ctx context.Context, method, conversation string) error {
	id, _ := auth.FromContext(ctx)
	f.mu.Lock()
	f.calls = append(f.calls, call{method, conversation, id, auth.IsInternal(ctx)})
	f.mu.Unlock()
	switch conversation {
	case "missing":
		return connect.NewError(connect.CodeNotFound, errors.New("conversation not found"))
	case "broken":
		return errors.New("database on fire")
	case "reset": // what connect-go's client reports
		return connect.NewError(connect.CodeCanceled, fmt.Errorf("read tcp: %w", syscall.ECONNRESET))
	case "block":
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeMessages) SendMessage(ctx context.Context, r *chatv1.SendMessageRequest) (*chatv1.SendMessageResponse, error) {
	if err := f.do(ctx, "SendMessage", r.GetConversationId()); err != nil {
		return nil, err
	}
	return &chatv1.SendMessageResponse{Message: &chatv1.Message{
		ConversationId: r.GetConversationId(), ClientMsgId: r.GetClientMsgId(), Seq: 7,
	}}, nil
}

func (f *fakeMessages) Sync(ctx context.Context, r *chatv1.SyncRequest) (*chatv1.SyncResponse, error) {
	if err := f.do(ctx, "Sync", r.GetCursor()); err != nil {
		return nil, err
	}
	return &chatv1.SyncResponse{NextCursor: "next"}, nil
}

func (f *fakeMessages) MarkRead(ctx context.Context, r *chatv1.MarkReadRequest) (*chatv1.MarkReadResponse, error) {
	if err := f.do(ctx, "MarkRead", r.GetConversationId()); err != nil {
		return nil, err
	}
	return &chatv1.MarkReadResponse{UnreadCount: 1}, nil
}

func (f *fakeMessages) SendTyping(ctx context.Context, r *chatv1.SendTypingRequest) (*chatv1.SendTypingResponse, error) {
	return &chatv1.SendTypingResponse{}, f.do(ctx, "SendTyping", r.GetConversationId())
}

func (f *fakeMessages) AddReaction(ctx context.Context, r *chatv1.AddReactionRequest) (*chatv1.AddReactionResponse, error) {
	if err := f.do(ctx, "AddReaction", r.GetConversationId()); err != nil {
		return nil, err
	}
	return &chatv1.AddReactionResponse{Event: &chatv1.Event{ConversationId: r.GetConversationId(), Seq: 8}}, nil
}

func (f *fakeMessages) RemoveReaction(ctx context.Context, r *chatv1.RemoveReactionRequest) (*chatv1.RemoveReactionResponse, error) {
	// A nil response must reach the client as an empty one.
	return nil, f.do(ctx, "RemoveReaction", r.GetConversationId())
}

func (f *fakeMessages) EditMessage(ctx context.Context, r *chatv1.EditMessageRequest) (*chatv1.EditMessageResponse, error) {
	if err := f.do(ctx, "EditMessage", r.GetConversationId()); err != nil {
		return nil, err
	}
	return &chatv1.EditMessageResponse{Message: &chatv1.Message{MessageId: r.GetMessageId()}}, nil
}

func (f *fakeMessages) DeleteMessagesForMe(ctx context.Context, r *chatv1.DeleteMessagesForMeRequest) (*chatv1.DeleteMessagesForMeResponse, error) {
	if err := f.do(ctx, "DeleteMessagesForMe", r.GetConversationId()); err != nil {
		return nil, err
	}
	return &chatv1.DeleteMessagesForMeResponse{UserEvent: &chatv1.UserEvent{Seq: 3}}, nil
}

func (f *fakeMessages) RecallMessage(ctx context.Context, r *chatv1.RecallMessageRequest) (*chatv1.RecallMessageResponse, error) {
	if err := f.do(ctx, "RecallMessage", r.GetConversationId()); err != nil {
		return nil, err
	}
	return &chatv1.RecallMessageResponse{Event: &chatv1.Event{ConversationId: r.GetConversationId(), Seq: 9}}, nil
}

type fakeDeliveries struct {
	mu   sync.Mutex
	acks []*chatv1.DeliveryAck
}

var errNotInternal = connect.NewError(connect.CodePermissionDenied, errors.New("procedure is internal-only"))

func (f *fakeDeliveries) ReportDeliveries(ctx context.Context, r *chatv1.ReportDeliveriesRequest) (*chatv1.ReportDeliveriesResponse, error) {
	if !auth.IsInternal(ctx) {
		return nil, errNotInternal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks = append(f.acks, r.GetAcks()...)
	return &chatv1.ReportDeliveriesResponse{}, nil
}

func (f *fakeDeliveries) reported() []*chatv1.DeliveryAck {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*chatv1.DeliveryAck(nil), f.acks...)
}

type fakeRegistry struct {
	mu           sync.Mutex
	live         map[string]*presencev1.Session
	unregistered []string
	renewals     [][]string // session ids of each RenewSessions call
	fail         bool
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{live: make(map[string]*presencev1.Session)}
}

func (f *fakeRegistry) RegisterSessions(ctx context.Context, r *presencev1.RegisterSessionsRequest) (*presencev1.RegisterSessionsResponse, error) {
	if !auth.IsInternal(ctx) {
		return nil, errNotInternal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("redis down"))
	}
	for _, s := range r.GetSessions() {
		f.live[s.GetSessionId()] = s
	}
	return &presencev1.RegisterSessionsResponse{}, nil
}

func (f *fakeRegistry) RenewSessions(ctx context.Context, r *presencev1.RenewSessionsRequest) (*presencev1.RenewSessionsResponse, error) {
	if !auth.IsInternal(ctx) {
		return nil, errNotInternal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, s := range r.GetSessions() {
		ids = append(ids, s.GetSessionId())
	}
	f.renewals = append(f.renewals, ids)
	return &presencev1.RenewSessionsResponse{}, nil
}

func (f *fakeRegistry) UnregisterSessions(ctx context.Context, r *presencev1.UnregisterSessionsRequest) (*presencev1.UnregisterSessionsResponse, error) {
	if !auth.IsInternal(ctx) {
		return nil, errNotInternal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range r.GetSessions() {
		delete(f.live, s.GetSessionId())
		f.unregistered = append(f.unregistered, s.GetSessionId())
	}
	return &presencev1.UnregisterSessionsResponse{}, nil
}

func (f *fakeRegistry) isLive(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.live[id]
	return ok
}

// fakePresence shows everyone online, except ids starting with "hidden",
// which the caller may not see. Asked about "reset" it fails as a call over
// a reset connection, about "broken" with a plain error, like fakeMessages.
type fakePresence struct{}

func (fakePresence) GetPresence(_ context.Context, r *presencev1.GetPresenceRequest) (*presencev1.GetPresenceResponse, error) {
	if len(r.GetUserIds()) > maxPresenceLookup {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("too many user ids"))
	}
	res := &presencev1.GetPresenceResponse{}
	for _, id := range r.GetUserIds() {
		switch id {
		case "reset":
			return nil, connect.NewError(connect.CodeCanceled, fmt.Errorf("read tcp: %w", syscall.ECONNRESET))
		case "broken":
			return nil, errors.New("redis on fire")
		}
		if strings.HasPrefix(id, "hidden") {
			res.Presences = append(res.Presences, &presencev1.UserPresence{UserId: id, Status: presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE, Hidden: true})
			continue
		}
		res.Presences = append(res.Presences, &presencev1.UserPresence{UserId: id, Status: presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE})
	}
	return res, nil
}

// fakeBus delivers synchronously, on the publishing goroutine.
type fakeBus struct {
	mu       sync.Mutex
	handlers map[string]bus.Handler
	fail     bool // Subscribe fails
}

type fakeSubscription struct {
	bus     *fakeBus
	channel string
	once    sync.Once
}

func (s *fakeSubscription) Close() error {
	s.once.Do(func() {
		s.bus.mu.Lock()
		defer s.bus.mu.Unlock()
		delete(s.bus.handlers, s.channel)
	})
	return nil
}

func (b *fakeBus) Subscribe(_ context.Context, handle bus.Handler, channels ...string) ([]bus.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail {
		return nil, errors.New("bus down")
	}
	subs := make([]bus.Subscription, len(channels))
	for i, ch := range channels {
		b.handlers[ch] = handle
		subs[i] = &fakeSubscription{bus: b, channel: ch}
	}
	return subs, nil
}

func (b *fakeBus) subscribed(channel string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.handlers[channel] != nil
}

// publish sends env on channel; it reports whether anyone listened.
func (b *fakeBus) publish(t testing.TB, channel string, env *busv1.Envelope) bool {
	t.Helper()
	payload, err := proto.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b.publishRaw(channel, payload)
}

func (b *fakeBus) publishRaw(channel string, payload []byte) bool {
	b.mu.Lock()
	h := b.handlers[channel]
	b.mu.Unlock()
	if h != nil {
		h(channel, payload)
	}
	return h != nil
}

// fakeStreams is the chat service's stream store as the edge sees it:
// users' groups, and the events ReadEvents reads back.
type fakeStreams struct {
	mu      sync.Mutex
	groups  map[string][]*chatv1.GroupMembership
	userSeq map[string]uint64
	events  map[string][]*chatv1.Event     // by conversation, seq i+1 at i
	user    map[string][]*chatv1.UserEvent // by user, seq i+1 at i
	changes []*chatv1.DirectChange
	reads   []*chatv1.StreamRange
	loads   int
	fail    bool
}

func newFakeStreams() *fakeStreams {
	return &fakeStreams{groups: map[string][]*chatv1.GroupMembership{}, userSeq: map[string]uint64{},
		events: map[string][]*chatv1.Event{}, user: map[string][]*chatv1.UserEvent{}}
}

// store appends events to a conversation's log; they must follow on.
func (f *fakeStreams) store(evs ...*chatv1.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range evs {
		f.events[ev.GetConversationId()] = append(f.events[ev.GetConversationId()], ev)
	}
}

func (f *fakeStreams) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reads)
}

func (f *fakeStreams) ListRoutes(ctx context.Context, r *chatv1.ListRoutesRequest) (*chatv1.ListRoutesResponse, error) {
	if !auth.IsInternal(ctx) {
		return nil, errNotInternal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	if f.fail {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("chat down"))
	}
	res := &chatv1.ListRoutesResponse{}
	for _, u := range r.GetUserIds() {
		res.Users = append(res.Users, &chatv1.UserRoutes{UserId: u, UserSeq: f.userSeq[u], Groups: f.groups[u]})
	}
	return res, nil
}

func (f *fakeStreams) ReadEvents(ctx context.Context, r *chatv1.ReadEventsRequest) (*chatv1.ReadEventsResponse, error) {
	if !auth.IsInternal(ctx) {
		return nil, errNotInternal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, r.GetConversations()...)
	f.reads = append(f.reads, r.GetUsers()...)
	if f.fail {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("chat down"))
	}
	res := &chatv1.ReadEventsResponse{}
	for _, sr := range r.GetConversations() {
		out := &chatv1.ConversationEvents{ConversationId: sr.GetId()}
		for _, ev := range f.events[sr.GetId()] {
			if ev.GetSeq() >= sr.GetFromSeq() && (sr.GetToSeq() == 0 || ev.GetSeq() <= sr.GetToSeq()) {
				out.Events = append(out.Events, ev)
			}
		}
		res.Conversations = append(res.Conversations, out)
	}
	for _, sr := range r.GetUsers() {
		out := &chatv1.UserEvents{UserId: sr.GetId()}
		for _, ev := range f.user[sr.GetId()] {
			if ev.GetSeq() >= sr.GetFromSeq() && (sr.GetToSeq() == 0 || ev.GetSeq() <= sr.GetToSeq()) {
				out.Events = append(out.Events, ev)
			}
		}
		res.Users = append(res.Users, out)
	}
	return res, nil
}

func (f *fakeStreams) ListDirectChanges(ctx context.Context, r *chatv1.ListDirectChangesRequest) (*chatv1.ListDirectChangesResponse, error) {
	if !auth.IsInternal(ctx) {
		return nil, errNotInternal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &chatv1.ListDirectChangesResponse{Changes: f.changes}, nil
}

// testEdge is an Edge over fakes.
type testEdge struct {
	*Edge
	bus        *fakeBus
	messages   *fakeMessages
	registry   *fakeRegistry
	deliveries *fakeDeliveries
	streams    *fakeStreams
}

func testConfig() Config {
	return Config{EdgeID: "edge-test", CloseTimeout: 100 * time.Millisecond}
}

func newTestEdge(t testing.TB, cfg Config) *testEdge {
	t.Helper()
	te := &testEdge{
		bus:        &fakeBus{handlers: make(map[string]bus.Handler)},
		messages:   newFakeMessages(),
		registry:   newFakeRegistry(),
		deliveries: &fakeDeliveries{},
		streams:    newFakeStreams(),
	}
	e, err := New(cfg, Deps{
		Tokens:     fakeTokens{},
		Messages:   te.messages,
		Deliveries: te.deliveries,
		Streams:    te.streams,
		Registry:   te.registry,
		Presence:   fakePresence{},
		Bus:        te.bus,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	te.Edge = e
	// Sessions end (their conns are cancelled by earlier cleanups) and log
	// before the test does.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTime)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return te
}

// run starts the background loops; the edge is shut down at the end of
// the test.
func (te *testEdge) run(t testing.TB) {
	t.Helper()
	runErr := make(chan error, 1)
	go func() { runErr <- te.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTime)
		defer cancel()
		if err := te.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-runErr; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// toUsers publishes env on each user's channel, failing if none listens.
func (te *testEdge) toUsers(t testing.TB, env *busv1.Envelope, users ...string) {
	t.Helper()
	heard := false
	for _, u := range users {
		heard = te.bus.publish(t, bus.UserChannel(u), env) || heard
	}
	if !heard {
		t.Fatalf("the edge listens to none of the channels of %v", users)
	}
}

// toGroup publishes env on a group's channel, failing if the edge does not
// listen to it.
func (te *testEdge) toGroup(t testing.TB, conv string, env *busv1.Envelope) {
	t.Helper()
	if !te.bus.publish(t, bus.ConversationChannel(conv), env) {
		t.Fatalf("the edge does not listen to group %s", conv)
	}
}

// testLogger logs through t with -v. A fuzz target's edge must not log
// through its *testing.F.
func testLogger(t testing.TB) *slog.Logger {
	if _, fuzz := t.(*testing.F); testing.Verbose() && !fuzz {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// memConn is an in-memory FrameConn. Sends block once out is full, like a
// client that stopped reading; Abort unblocks them.
type memConn struct {
	ctx         context.Context
	cancel      context.CancelFunc
	in          chan *edgev1.ClientFrame
	out         chan *edgev1.ServerFrame
	ended       chan struct{} // closed when Serve returned: the transport tears down
	aborted     chan struct{}
	interrupted chan struct{}
	once        sync.Once
	recvOnce    sync.Once
	sends       atomic.Int32 // Send calls begun
}

func newMemConn(outBuffer int) *memConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &memConn{
		ctx: ctx, cancel: cancel,
		in:          make(chan *edgev1.ClientFrame, 16),
		out:         make(chan *edgev1.ServerFrame, outBuffer),
		ended:       make(chan struct{}),
		aborted:     make(chan struct{}),
		interrupted: make(chan struct{}),
	}
}

var errTornDown = errors.New("stream torn down")

func (c *memConn) Context() context.Context { return c.ctx }

func (c *memConn) Recv() (*edgev1.ClientFrame, error) {
	select {
	case f, ok := <-c.in:
		if !ok {
			return nil, io.EOF
		}
		return f, nil
	case <-c.ended:
		return nil, errTornDown
	case <-c.interrupted:
		return nil, errors.New("read interrupted")
	}
}

func (c *memConn) InterruptRecv() { c.recvOnce.Do(func() { close(c.interrupted) }) }

func (c *memConn) Send(f *edgev1.ServerFrame) error {
	c.sends.Add(1)
	// Through the wire format, as a transport would: the edge writes
	// pre-encoded frames.
	raw, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	f = &edgev1.ServerFrame{}
	if err := proto.Unmarshal(raw, f); err != nil {
		return err
	}
	select {
	case c.out <- f:
		return nil
	case <-c.ended:
		return errTornDown
	case <-c.aborted:
		return errors.New("stream reset")
	}
}

func (c *memConn) Abort() { c.once.Do(func() { close(c.aborted) }) }

// client drives one session over a memConn.
type client struct {
	t       testing.TB
	conn    *memConn
	done    chan error
	welcome *edgev1.Welcome
}

// dial starts serving a bidi stream without sending anything.
func (te *testEdge) dial(t testing.TB, outBuffer int) *client {
	t.Helper()
	c := &client{t: t, conn: newMemConn(outBuffer), done: make(chan error, 1)}
	go func() {
		err := te.Serve(c.conn)
		close(c.conn.ended)
		c.done <- err
	}()
	t.Cleanup(c.conn.cancel)
	return c
}

// connect opens a session for token and returns it after the Welcome.
func (te *testEdge) connect(t testing.TB, token string) *client {
	return te.connectBuffered(t, token, 256)
}

func (te *testEdge) connectBuffered(t testing.TB, token string, outBuffer int) *client {
	t.Helper()
	c := te.dial(t, outBuffer)
	c.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Hello{Hello: &edgev1.Hello{ProtocolVersion: 1, AccessToken: token}}})
	c.welcome = c.recv().GetWelcome()
	if c.welcome == nil {
		t.Fatal("first server frame is not a Welcome")
	}
	return c
}

func (c *client) send(f *edgev1.ClientFrame) {
	c.t.Helper()
	select {
	case c.conn.in <- f:
	case <-time.After(waitTime):
		c.t.Fatal("timed out sending a frame")
	}
}

func (c *client) recv() *edgev1.ServerFrame {
	c.t.Helper()
	select {
	case f := <-c.conn.out:
		return f
	case <-time.After(waitTime):
		c.t.Fatal("timed out waiting for a server frame")
		return nil
	}
}

// wait returns the error Serve ended the stream with.
func (c *client) wait() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(waitTime):
		c.t.Fatal("timed out waiting for the session to end")
		return nil
	}
}

// ping sends a Ping and reads frames until its Pong, returning what came
// before it.
func (c *client) ping(id uint64) []*edgev1.ServerFrame {
	c.t.Helper()
	c.send(&edgev1.ClientFrame{Id: id, Kind: &edgev1.ClientFrame_Ping{Ping: &edgev1.Ping{}}})
	var before []*edgev1.ServerFrame
	for {
		f := c.recv()
		if f.GetPong() != nil && f.GetId() == id {
			return before
		}
		before = append(before, f)
	}
}

func (c *client) ack(pushID uint64) {
	c.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: pushID}}})
}

func codeOf(err error) Code {
	if err == nil {
		return 0
	}
	return CodeOf(err)
}

// messagePush is a push with one message event per seq.
func messagePush(conversation string, seqs ...uint64) *edgev1.Push {
	p := &edgev1.Push{}
	for _, seq := range seqs {
		p.Events = append(p.Events, &chatv1.Event{ConversationId: conversation, Seq: seq,
			Kind: &chatv1.Event_Message{Message: &chatv1.Message{ConversationId: conversation, Seq: seq}}})
	}
	return p
}

func seqsOf(p *edgev1.Push) []uint64 {
	var out []uint64
	for _, ev := range p.GetEvents() {
		out = append(out, ev.GetSeq())
	}
	return out
}
