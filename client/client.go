// Package client is Waggle's Go SDK for the edge stream: it holds a session
// with heartbeats, reconnects with jittered backoff, syncs from its cursor
// after every (re)connect, acks pushes, drops duplicates, repairs gaps and
// resends its own unanswered sends with the same client_msg_id.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// Config configures a Client. Zero values take the defaults noted.
type Config struct {
	// Dialers are the edges to use; each reconnect tries the next one.
	Dialers []Dialer
	// Token returns a valid access token for Hello.
	Token func(ctx context.Context) (string, error)
	// OnEvent receives every conversation event once, in seq order per
	// conversation. It runs on the client's reader goroutine with the
	// client's lock held: keep it short and call no Client method from it.
	OnEvent func(*chatv1.Event)
	// OnUserEvent receives the user's own events (read markers from other
	// devices, deletions for me, mutes, contact changes) once, in order.
	OnUserEvent func(*chatv1.UserEvent)
	// OnPush sees every push after its events were applied, for what is not
	// sequenced: typing, presence, others' read markers, unread counts.
	OnPush func(*edgev1.Push)
	// OnSession is called (on its own goroutine) after every session starts,
	// the first and each reconnect: the place to follow presence again,
	// since follows last for one session.
	OnSession func(*edgev1.Welcome)
	// Store persists the cursor and positions. Default: in memory.
	Store Store
	// SyncPageSize is the page size of syncs. Default 500.
	SyncPageSize int32
	// GapWait is how long an event that arrived ahead of a missing one is
	// held before the client syncs. Default 300 ms.
	GapWait time.Duration
	// AckDelay is how long after the oldest unacked push arrived the
	// client acks everything it holds. Default 500 ms.
	AckDelay time.Duration
	// AckEvery is how many unacked pushes make the client ack at once,
	// without waiting for AckDelay. Default 64; 1 acks every push.
	AckEvery int
	// MinBackoff and MaxBackoff bound the reconnect delay. Defaults 100 ms
	// and 5 s.
	MinBackoff, MaxBackoff time.Duration
	// ClientName is sent in Hello for the server's logs.
	ClientName string
	Logger     *slog.Logger
}

// Stats counts what the client has repaired; tests and apps' diagnostics
// read it.
type Stats struct {
	Sessions   int64 // sessions established (1 + reconnects)
	Syncs      int64 // sync calls made
	Duplicates int64 // events dropped as already applied
	Gaps       int64 // gaps in pushes that needed a sync to repair
	Reordered  int64 // events that arrived early and were applied in order
	Resends    int64 // sends repeated after a reconnect
}

// Client holds one device's session. Create it with New, run it with Run.
type Client struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	state   State
	dirty   map[string]bool // positions moved by pushes since the last sync
	held    map[string]*gap // early items, by sequence
	userID  string          // from Welcome
	session *session        // nil while disconnected
	ready   chan struct{}   // closed when session is set
	outbox  map[string]*outgoing
	syncing bool
	resync  bool
	nextID  atomic.Uint64
	stats   Stats
}

// outgoing is a send that has no answer yet. It keeps its client_msg_id
// across reconnects, so the server stores it once however often it is sent.
type outgoing struct {
	req  *chatv1.SendMessageRequest
	done chan result
}

type result struct {
	frame *edgev1.ServerFrame
	err   error
}

// New returns a client; it connects when Run is called.
func New(cfg Config) (*Client, error) {
	if len(cfg.Dialers) == 0 || cfg.Token == nil {
		return nil, errors.New("client: Dialers and Token are required")
	}
	if cfg.Store == nil {
		cfg.Store = &MemoryStore{}
	}
	if cfg.SyncPageSize == 0 {
		cfg.SyncPageSize = 500
	}
	if cfg.GapWait == 0 {
		cfg.GapWait = 300 * time.Millisecond
	}
	if cfg.AckDelay == 0 {
		cfg.AckDelay = 500 * time.Millisecond
	}
	if cfg.AckEvery == 0 {
		cfg.AckEvery = 64
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(*chatv1.Event) {}
	}
	if cfg.OnUserEvent == nil {
		cfg.OnUserEvent = func(*chatv1.UserEvent) {}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Client{cfg: cfg, log: log, ready: make(chan struct{}), outbox: map[string]*outgoing{}, dirty: map[string]bool{},
		held: map[string]*gap{}}, nil
}

// Run keeps a session open until ctx is done, reconnecting as needed. It
// returns an error only for what reconnecting cannot fix: the server refuses
// the protocol version, or the credentials (twice in a row, so a token
// provider that refreshes gets its chance).
func (c *Client) Run(ctx context.Context) error {
	st, err := c.cfg.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("client: load state: %w", err)
	}
	if st.Seqs == nil {
		st.Seqs = map[string]uint64{}
	}
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()

	backoff := c.cfg.MinBackoff
	refused := 0
	for attempt := 0; ctx.Err() == nil; attempt++ {
		dialer := c.cfg.Dialers[attempt%len(c.cfg.Dialers)]
		started := time.Now()
		established, err := c.runSession(ctx, dialer)
		if ctx.Err() != nil {
			return nil
		}
		if established && connect.CodeOf(err) == connect.CodeUnauthenticated {
			// The edge ends a live session this way when its device logs
			// out: reconnecting with the same credentials must not follow.
			return fmt.Errorf("client: the device was logged out: %w", err)
		}
		switch connect.CodeOf(err) {
		case connect.CodeFailedPrecondition:
			return fmt.Errorf("client: the edge refused the session: %w", err)
		case connect.CodeUnauthenticated:
			if refused++; refused == 2 {
				return fmt.Errorf("client: credentials refused: %w", err)
			}
		default:
			refused = 0
		}
		if time.Since(started) > 10*time.Second {
			backoff = c.cfg.MinBackoff // it worked for a while: retry soon
		}
		// Full jitter: spread a crowd of clients reconnecting after an edge died.
		delay := time.Duration(rand.Int64N(int64(backoff))) + c.cfg.MinBackoff/2
		if after, ok := RetryDelay(err); ok {
			delay = max(delay, after) // sooner would be refused again
		}
		c.log.Info("client: session ended, reconnecting", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
	return nil
}

// errSessionClosed answers commands whose session ended before their answer:
// unavailable, so that callers retry on the next session.
var errSessionClosed = connect.NewError(connect.CodeUnavailable, errors.New("session closed"))

// session is one live stream.
type session struct {
	stream Stream
	sendMu sync.Mutex
	closed chan struct{}
	acks   acker
	end    context.CancelFunc // closes the stream, acking first

	// pending holds the answer channel of each command in flight. Whoever
	// removes an entry answers it, so each channel gets exactly one value;
	// nil once the session is over, when nothing new is registered.
	pendingMu sync.Mutex
	pending   map[uint64]chan result
}

// await registers a command; false if the session is already over.
func (s *session) await(id uint64, ch chan result) bool {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.pending == nil {
		return false
	}
	s.pending[id] = ch
	return true
}

// answer completes the command id, if it is still pending.
func (s *session) answer(id uint64, r result) {
	s.pendingMu.Lock()
	ch, ok := s.pending[id]
	delete(s.pending, id)
	s.pendingMu.Unlock()
	if ok {
		ch <- r
	}
}

// finish ends the session for commands: every pending one, and every later
// one, is answered with err.
func (s *session) finish(err error) {
	s.pendingMu.Lock()
	pending := s.pending
	s.pending = nil
	s.pendingMu.Unlock()
	for _, ch := range pending {
		ch <- result{err: err}
	}
}

func (s *session) send(f *edgev1.ClientFrame) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(f)
}

// runSession runs one session; established says whether it got past Hello.
func (c *Client) runSession(ctx context.Context, dialer Dialer) (established bool, err error) {
	token, err := c.cfg.Token(ctx)
	if err != nil {
		return false, fmt.Errorf("token: %w", err)
	}
	// The stream outlives ctx by its last ack (see closeWhenDone); until
	// dialed, ctx ends the dial.
	streamCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	stopAbort := context.AfterFunc(ctx, abort)
	stream, err := dialer.Dial(streamCtx)
	stopAbort()
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	defer stream.Close()
	s := &session{stream: stream, closed: make(chan struct{}), pending: map[uint64]chan result{}}
	s.acks = acker{delay: c.cfg.AckDelay, every: c.cfg.AckEvery, send: s.send}
	sessionCtx, end := context.WithCancel(ctx)
	defer end()
	s.end = end
	go s.closeWhenDone(sessionCtx)
	if err := stream.Send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Hello{Hello: &edgev1.Hello{
		ProtocolVersion: 1, AccessToken: token, ClientName: c.cfg.ClientName}}}); err != nil {
		return false, fmt.Errorf("hello: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return false, fmt.Errorf("hello: %w", err)
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return false, fmt.Errorf("hello answered with %v", first)
	}

	defer close(s.closed)
	c.mu.Lock()
	c.session, c.userID = s, welcome.GetUserId()
	c.stats.Sessions++
	close(c.ready)
	outbox := make([]*outgoing, 0, len(c.outbox))
	for _, o := range c.outbox {
		outbox = append(outbox, o)
	}
	c.stats.Resends += int64(len(outbox))
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.session, c.ready = nil, make(chan struct{})
		c.syncing = false
		c.mu.Unlock()
		s.finish(errSessionClosed)
	}()

	// Catch up first, then repeat what may not have been stored.
	c.startSync(s)
	if c.cfg.OnSession != nil {
		go c.cfg.OnSession(welcome)
	}
	for _, o := range outbox {
		c.transmit(s, o)
	}

	go c.heartbeat(sessionCtx, s, welcome.GetHeartbeatInterval().AsDuration())
	for {
		f, err := stream.Recv()
		if err != nil {
			return true, err
		}
		c.handle(s, f)
	}
}

// closeWhenDone closes the stream when ctx ends, which unblocks Recv. It
// acks what the session holds first, so that the edge reports it as
// delivered (best effort: the stream may already be gone); a send stuck on
// a dead connection gets a second before the close unblocks it.
func (s *session) closeWhenDone(ctx context.Context) {
	<-ctx.Done()
	stuck := time.AfterFunc(time.Second, func() { _ = s.stream.Close() })
	s.acks.close()
	stuck.Stop()
	_ = s.stream.Close()
}

func (c *Client) heartbeat(ctx context.Context, s *session, every time.Duration) {
	if every <= 0 {
		every = 25 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ping{Ping: &edgev1.Ping{}}}); err != nil {
				return
			}
		}
	}
}

func (c *Client) handle(s *session, f *edgev1.ServerFrame) {
	switch k := f.GetKind().(type) {
	case *edgev1.ServerFrame_Push:
		c.applyPush(s, k.Push)
	case *edgev1.ServerFrame_Result, *edgev1.ServerFrame_Error:
		s.answer(f.GetId(), result{frame: f})
	case *edgev1.ServerFrame_SyncRequired:
		c.startSync(s)
	case *edgev1.ServerFrame_Goaway:
		// The edge ends the stream right after, with the reason's code
		// (none when it drains, unauthenticated on logout); Run reads it.
	}
}

// call sends a command on s and returns a channel for its answer.
func (c *Client) call(s *session, f *edgev1.ClientFrame) chan result {
	f.Id = c.nextID.Add(1)
	ch := make(chan result, 1)
	if !s.await(f.Id, ch) {
		ch <- result{err: errSessionClosed}
		return ch
	}
	if err := s.send(f); err != nil {
		s.answer(f.Id, result{err: connect.NewError(connect.CodeUnavailable, err)})
	}
	return ch
}

// Send sends a message and returns it as stored. It waits for a session and
// survives reconnects: the same client_msg_id is sent again until the
// server answers, so the message is stored exactly once.
func (c *Client) Send(ctx context.Context, conversationID string, content *chatv1.MessageContent) (*chatv1.Message, error) {
	o := &outgoing{
		req:  &chatv1.SendMessageRequest{ConversationId: conversationID, ClientMsgId: uuid.NewString(), Content: content},
		done: make(chan result, 1),
	}
	c.mu.Lock()
	c.outbox[o.req.ClientMsgId] = o
	s := c.session
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.outbox, o.req.ClientMsgId)
		c.mu.Unlock()
	}()
	if s != nil {
		c.transmit(s, o)
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-o.done:
		if r.err != nil {
			return nil, r.err
		}
		if e := r.frame.GetError(); e != nil {
			return nil, frameError(e)
		}
		return r.frame.GetResult().GetSendMessage().GetMessage(), nil
	}
}

// transmit sends o on s; an answer completes o, a lost session leaves it in
// the outbox for the next one.
func (c *Client) transmit(s *session, o *outgoing) {
	ch := c.call(s, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_SendMessage{SendMessage: o.req}})
	go func() {
		r := <-ch
		if r.err != nil {
			return // session lost; the next session resends
		}
		if e := r.frame.GetError(); e != nil && retryable(e.GetCode()) {
			select {
			case <-s.closed: // the next session resends
			case <-time.After(time.Second):
				c.mu.Lock()
				pending := c.outbox[o.req.GetClientMsgId()] == o
				c.mu.Unlock()
				if pending { // Send may have given up meanwhile
					c.transmit(s, o)
				}
			}
			return
		}
		c.mu.Lock()
		for _, it := range resultItems(r.frame.GetResult()) {
			c.offer(s, it)
		}
		c.mu.Unlock()
		select {
		case o.done <- r:
		default:
		}
	}()
}

func retryable(code string) bool {
	var c connect.Code
	if err := c.UnmarshalText([]byte(code)); err != nil {
		return false
	}
	return c == connect.CodeUnavailable || c == connect.CodeDeadlineExceeded || c == connect.CodeAborted
}

func frameError(e *edgev1.Error) error {
	var code connect.Code
	if err := code.UnmarshalText([]byte(e.GetCode())); err != nil {
		code = connect.CodeUnknown
	}
	return connect.NewError(code, errors.New(e.GetMessage()))
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Positions returns the highest seq applied per conversation.
func (c *Client) Positions() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.state.Seqs))
	for k, v := range c.state.Seqs {
		out[k] = v
	}
	return out
}

// WaitConnected blocks until a session is up.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Call sends a command on the current session (waiting for one) and returns
// its result. Unlike Send it is not retried after a lost session: callers
// decide whether repeating the command is safe.
func (c *Client) Call(ctx context.Context, f *edgev1.ClientFrame) (*edgev1.Result, error) {
	if err := c.WaitConnected(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s == nil {
		return nil, errSessionClosed
	}
	select {
	case r := <-c.call(s, f):
		if r.err != nil {
			return nil, r.err
		}
		if e := r.frame.GetError(); e != nil {
			return nil, frameError(e)
		}
		// The edge does not push a command's own events back to the session
		// that sent it: the answer is its copy.
		c.mu.Lock()
		for _, it := range resultItems(r.frame.GetResult()) {
			c.offer(s, it)
		}
		c.mu.Unlock()
		return r.frame.GetResult(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resultItems are the sequenced changes a command's answer carries.
func resultItems(r *edgev1.Result) []item {
	var items []item
	if m := r.GetSendMessage().GetMessage(); m != nil {
		items = append(items, convItem(&chatv1.Event{ConversationId: m.GetConversationId(), Seq: m.GetSeq(),
			CreateTime: m.GetCreateTime(), ActorUserId: m.GetSenderUserId(), Kind: &chatv1.Event_Message{Message: m}}))
	}
	for _, ev := range []*chatv1.Event{
		r.GetEditMessage().GetEvent(), r.GetRecallMessage().GetEvent(),
		r.GetAddReaction().GetEvent(), r.GetRemoveReaction().GetEvent(),
	} {
		if ev != nil {
			items = append(items, convItem(ev))
		}
	}
	if ev := r.GetDeleteMessagesForMe().GetUserEvent(); ev != nil {
		items = append(items, userItem(ev))
	}
	return items
}

// FollowPresence changes whose presence this session receives (in OnPush)
// and returns the added users' presence now. Follows last for the session:
// after a reconnect, follow again.
func (c *Client) FollowPresence(ctx context.Context, add, remove []string) ([]*presencev1.UserPresence, error) {
	res, err := c.Call(ctx, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_PresenceSubscription{
		PresenceSubscription: &edgev1.PresenceSubscription{AddUserIds: add, RemoveUserIds: remove}}})
	if err != nil {
		return nil, err
	}
	return res.GetPresenceSnapshot().GetPresences(), nil
}
