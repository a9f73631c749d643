package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// session is one authenticated stream of one device.
//
// Goroutines: the serving call reads the client's frames (a push-only
// session's waits for its end), a writer goroutine exists while frames
// are queued (queue.go; the only caller of Send), a command goroutine while
// commands are queued, and a shutdown goroutine while it closes. An idle
// session therefore costs one goroutine besides its transport's. Bus
// deliveries, unary Acks and the sweeper touch the session under mu.
type session struct {
	e          *Edge
	id         string
	ident      auth.Identity // SessionID is id
	clientName string
	loginTime  time.Time
	info       *presencev1.Session // its registry record; read-only
	route      *userRoute          // its user's bus route; set before it serves
	conn       FrameSender

	ctx    context.Context // done once the session is closed
	cancel context.CancelFunc
	shut   chan struct{} // closed once shutdown has run

	lastSeen atomic.Int64 // unix nanoseconds of the last sign of life

	mu       sync.Mutex
	closed   bool
	closeErr error  // what the stream ends with; nil for a clean end
	goaway   string // Goaway reason written before the end, if any

	outbox // outgoing frames, unacknowledged pushes (queue.go)

	commands        []*edgev1.ClientFrame
	commandsRunning bool
	commandsDone    sync.WaitGroup

	presenceSubs map[string]struct{} // users whose presence this session follows
}

// Serve runs a session on a bidirectional stream until it ends, and returns
// the error the transport should end the stream with (nil for a clean end).
// The first frame must be a Hello. The serving call itself reads the
// client's frames; closing the session interrupts its read (FrameConn).
func (e *Edge) Serve(conn FrameConn) error {
	s, err := e.greet(conn)
	if err != nil {
		return err
	}
	s.readLoop(conn)
	return s.end()
}

// greet reads the Hello, within HelloTimeout, and opens the session. The
// stream holds a slot of the hello gate until it is welcomed or refused.
func (e *Edge) greet(conn FrameConn) (*session, error) {
	release, err := e.hellos.enter(connID(conn.Context()))
	if err != nil {
		return nil, err
	}
	defer release()
	f, err, inTime := e.readHello(conn)
	if !inTime {
		return nil, errorf(CodeDeadlineExceeded, "no hello within %v", e.cfg.HelloTimeout)
	}
	switch {
	case errors.Is(err, io.EOF):
		return nil, newError(CodeUnauthenticated, errors.New("stream ended before hello"))
	case conn.Context().Err() != nil:
		return nil, newError(CodeCanceled, errors.New("stream ended before hello"))
	case err != nil:
		return nil, err
	}
	hello := f.GetHello()
	if hello == nil {
		return nil, newError(CodeUnauthenticated, errors.New("first frame must be hello"))
	}
	return e.openAside(conn, hello)
}

// readHello reads the first frame within HelloTimeout; inTime is false if
// the deadline came first.
func (e *Edge) readHello(conn FrameConn) (f *edgev1.ClientFrame, err error, inTime bool) {
	if _, ok := conn.(resettingConn); ok {
		type read struct {
			f   *edgev1.ClientFrame
			err error
		}
		got := make(chan read, 1)
		go func() {
			f, err := conn.Recv()
			got <- read{f, err}
		}()
		deadline := time.NewTimer(e.cfg.HelloTimeout)
		defer deadline.Stop()
		select {
		case r := <-got:
			return r.f, r.err, true
		case <-deadline.C:
			return nil, nil, false
		}
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(e.cfg.HelloTimeout, func() {
		timedOut.Store(true)
		conn.InterruptRecv()
	})
	f, err = conn.Recv()
	return f, err, timer.Stop() && !timedOut.Load()
}

// openAside opens the session on a goroutine of its own. Opening calls
// deep (token checks, registry, routes, encoding); a goroutine's stack
// keeps about the size its deepest call needed, so the serving call, which
// then waits in Recv for the session's whole life, stays small this way.
func (e *Edge) openAside(conn FrameSender, hello *edgev1.Hello) (*session, error) {
	type opened struct {
		s   *session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := e.open(conn, hello)
		ch <- opened{s, err}
	}()
	o := <-ch
	return o.s, o.err
}

// ServeSubscribe runs a push-only session (EdgeService.Subscribe, for
// browsers) until it ends. hello carries what the transport learned from the
// request: protocol version, client name and the bearer token. The session
// is kept alive by Ack calls (see Edge.Ack).
func (e *Edge) ServeSubscribe(conn FrameSender, hello *edgev1.Hello) error {
	release, err := e.hellos.enter(connID(conn.Context()))
	if err != nil {
		return err
	}
	s, err := e.openAside(conn, hello)
	release()
	if err != nil {
		return err
	}
	<-s.ctx.Done()
	return s.end()
}

// open authenticates a Hello, records and registers the session, and sends
// the Welcome. Pushes routed to the session from the moment it is in the
// hub are queued and written after the Welcome.
func (e *Edge) open(conn FrameSender, hello *edgev1.Hello) (*session, error) {
	if v := hello.GetProtocolVersion(); v != ProtocolVersion {
		return nil, errorf(CodeFailedPrecondition,
			"unsupported protocol version %d: this edge speaks %d", v, ProtocolVersion)
	}
	ident, err := e.verify(hello.GetAccessToken())
	if err != nil {
		return nil, err
	}
	if ident.UserID == "" {
		return nil, newError(CodeUnauthenticated, errors.New("access token names no user"))
	}
	if err := e.beginSession(); err != nil {
		return nil, err
	}
	s := e.newSession(conn, ident, hello.GetClientName())
	e.hub.add(s)
	// The registry and the user's route (bus subscriptions) in parallel:
	// both before the Welcome, so what is committed after the client's
	// first sync reaches it.
	var regErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, regErr = e.register.do(s.info) })
	ctx, cancel := context.WithTimeout(s.ctx, e.cfg.CommandTimeout)
	route, routeErr := e.routes.acquire(ctx, ident.UserID)
	cancel()
	wg.Wait()
	if regErr != nil || routeErr != nil {
		if route != nil {
			e.routes.release(route)
		}
		if regErr == nil {
			if _, err := e.unregister.do(s.info); err != nil {
				e.log.Warn("edge: unregister session", "session_id", s.id, "err", err)
			}
		}
		e.hub.remove(s)
		s.cancel()
		e.sessions.Done()
		e.log.Error("edge: open session", "session_id", s.id, "user_id", ident.UserID, "registry_err", regErr, "route_err", routeErr)
		return nil, newError(CodeUnavailable, errors.New("cannot open the session: try again"))
	}
	s.route = route
	welcome := &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Welcome{Welcome: &edgev1.Welcome{
		SessionId:         s.id,
		ProtocolVersion:   ProtocolVersion,
		HeartbeatInterval: durationpb.New(e.cfg.HeartbeatInterval),
		SessionTimeout:    durationpb.New(e.cfg.SessionTimeout),
		EdgeId:            e.cfg.EdgeID,
		MaxFrameBytes:     uint32(e.cfg.MaxFrameBytes),
		UserId:            ident.UserID,
		DeviceId:          ident.DeviceID,
	}}}
	if err := conn.Send(welcome); err != nil {
		s.close(fmt.Errorf("edge: send welcome: %w", err), "")
		return nil, s.end()
	}
	// Pushes routed before the Welcome was written wait for it.
	s.mu.Lock()
	s.welcomed = true
	s.startWriterLocked()
	s.mu.Unlock()
	// Shutdown may have listed the hub before this session joined it.
	if e.isDraining() {
		s.close(nil, "edge is shutting down")
	}
	e.log.Debug("edge: session opened", "session_id", s.id, "user_id", ident.UserID,
		"device_id", ident.DeviceID, "client", s.clientName)
	return s, nil
}

// verify checks an access token. Only expiry is worth telling the client
// (it refreshes); other detail (unknown key id, bad signature) helps
// attackers more than apps, so it is only logged.
func (e *Edge) verify(token string) (auth.Identity, error) {
	ident, err := e.deps.Tokens.Verify(token)
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return ident, newError(CodeUnauthenticated, auth.ErrTokenExpired)
	case err != nil:
		e.log.Info("edge: access token refused", "err", err)
		return ident, newError(CodeUnauthenticated, auth.ErrInvalidToken)
	}
	return ident, nil
}

func (e *Edge) newSession(conn FrameSender, ident auth.Identity, clientName string) *session {
	now := time.Now()
	ident.SessionID = uuid.NewString()
	s := &session{
		e:          e,
		id:         ident.SessionID,
		ident:      ident,
		clientName: clientName,
		loginTime:  now,
		conn:       conn,
	}
	s.info = &presencev1.Session{
		SessionId: s.id,
		UserId:    ident.UserID,
		DeviceId:  ident.DeviceID,
		EdgeId:    e.cfg.EdgeID,
		LoginTime: timestamppb.New(now),
	}
	s.ctx, s.cancel = context.WithCancel(conn.Context())
	s.shut = make(chan struct{})
	context.AfterFunc(s.ctx, s.shutdown)
	s.touch()
	return s
}

// end waits for the session's shutdown, which its close started, then
// tears it down and returns the error the stream ends with.
func (s *session) end() error {
	s.closeEnded()
	<-s.shut
	return s.finish()
}

// shutdown runs once the session's context is done (close, or the
// transport ending the stream): it lets the writer finish with a Goaway if
// one is due, then interrupts the stream's read, so the serving call
// returns.
func (s *session) shutdown() {
	defer close(s.shut)
	// No writer may start once awaitWriter waits for them.
	s.closeEnded()
	s.awaitWriter()
	if c, ok := s.conn.(FrameConn); ok {
		c.InterruptRecv()
	}
}

// abortGrace is how long an aborted stream's writer gets to return before
// the serving call returns without it (grpc-go unblocks a Send only once
// the handler has returned).
const abortGrace = time.Second

// awaitWriter lets the writer finish, then writes the Goaway if one is due
// and goaway is set, all within CloseTimeout: a client that stopped
// reading holds the writer in Send, and then the stream is aborted.
func (s *session) awaitWriter() {
	deadline := time.Now().Add(s.e.cfg.CloseTimeout)
	done := s.writersDone(deadline)
	s.mu.Lock()
	reason := s.goaway
	s.mu.Unlock()
	if done && reason != "" {
		s.writers.Add(1)
		go func() {
			defer s.writers.Done()
			// Best effort: the stream ends right after either way.
			_ = s.conn.Send(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Goaway{Goaway: &edgev1.Goaway{Reason: reason}}})
		}()
		done = s.writersDone(deadline)
	}
	if done {
		return
	}
	s.conn.Abort()
	s.writersDone(time.Now().Add(abortGrace))
}

// writersDone waits for the writers until deadline and reports whether
// they finished.
func (s *session) writersDone(deadline time.Time) bool {
	idle := make(chan struct{})
	go func() { s.writers.Wait(); close(idle) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// finish waits for the session's command goroutine, removes and unregisters
// the session, and returns its close error.
func (s *session) finish() error {
	s.commandsDone.Wait()
	s.e.hub.remove(s)
	s.mu.Lock()
	following := slices.Collect(maps.Keys(s.presenceSubs))
	s.mu.Unlock()
	s.e.watchers.unfollow(s, following)
	if s.route != nil {
		s.e.routes.release(s.route)
	}
	if _, err := s.e.unregister.do(s.info); err != nil {
		// Its registry entry expires with its TTL.
		s.e.log.Warn("edge: unregister session", "session_id", s.id, "err", err)
	}
	s.mu.Lock()
	err := s.closeErr
	s.mu.Unlock()
	s.e.log.Debug("edge: session closed", "session_id", s.id, "user_id", s.ident.UserID, "err", err)
	s.e.sessions.Done()
	return err
}

// closeEnded closes the session if nothing did: the transport may have
// ended the stream without a close.
func (s *session) closeEnded() {
	s.close(newError(CodeCanceled, errors.New("stream ended")), "")
}

// close ends the session: err is what the stream ends with (nil for a clean
// end), goaway, if set, the reason of a Goaway written first. The first call
// wins.
func (s *session) close(err error, goaway string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.closeErr = err
	s.goaway = goaway
	s.mu.Unlock()
	if code := CodeOf(err); err != nil && code != CodeCanceled {
		s.e.log.Info("edge: closing session", "session_id", s.id, "user_id", s.ident.UserID, "code", code, "err", err)
	}
	s.cancel()
}

func (s *session) touch() { s.lastSeen.Store(time.Now().UnixNano()) }

// readLoop handles the client's frames until the stream fails or ends.
func (s *session) readLoop(conn FrameConn) {
	for {
		f, err := conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil // the client closed its side: a clean end
			}
			s.close(err, "")
			return
		}
		s.handle(f)
	}
}

// handle acts on one client frame. It never blocks on the network: answers
// are queued for the writer and commands for the command goroutine.
func (s *session) handle(f *edgev1.ClientFrame) {
	s.touch()
	switch k := f.GetKind().(type) {
	case *edgev1.ClientFrame_Ping:
		s.enqueueControl(&edgev1.ServerFrame{Id: f.GetId(), Kind: &edgev1.ServerFrame_Pong{Pong: &edgev1.Pong{}}})
	case *edgev1.ClientFrame_Ack:
		s.ack(k.Ack.GetPushId())
	case *edgev1.ClientFrame_Hello:
		s.enqueueError(f.GetId(), CodeFailedPrecondition, "the session already said hello")
	case nil:
		s.enqueueError(f.GetId(), CodeUnimplemented, "unknown frame kind")
	default:
		if f.GetId() == 0 {
			s.enqueueError(0, CodeInvalidArgument, "a command needs a non-zero id")
			return
		}
		s.enqueueCommand(f)
	}
}

// sweep closes the session if it has been silent too long or stopped
// acknowledging, and has the writer resend overdue pushes.
func (s *session) sweep(now time.Time) {
	cfg := &s.e.cfg
	if silent := now.Sub(time.Unix(0, s.lastSeen.Load())); silent > cfg.SessionTimeout {
		s.close(errorf(CodeDeadlineExceeded,
			"session timed out: nothing received for %v", silent.Round(time.Millisecond)), "")
		return
	}
	s.mu.Lock()
	var giveUp, due bool
	if len(s.window) > 0 && !s.closed {
		oldest := s.window[0]
		giveUp = now.Sub(oldest.firstSentAt) >= cfg.AckTimeout*time.Duration(cfg.MaxResends+1)
		due = !giveUp && now.Sub(oldest.sentAt) >= cfg.AckTimeout
		s.resendDue = s.resendDue || due
	}
	s.mu.Unlock()
	switch {
	case giveUp:
		s.close(errorf(CodeDeadlineExceeded,
			"client stopped acknowledging: push not acknowledged after %d resends; reconnect and sync", cfg.MaxResends), "")
	case due:
		s.mu.Lock()
		s.startWriterLocked()
		s.mu.Unlock()
	}
}

// belongsTo reports whether the session is the caller's own.
func (s *session) belongsTo(id auth.Identity) bool {
	return s.ident.UserID == id.UserID && s.ident.DeviceID == id.DeviceID
}
