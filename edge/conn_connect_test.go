package edge

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
)

// Over real HTTP/2 (h2c), with connect-go and grpc-go clients.

// newHTTPEdge serves a running test edge over h2c.
func newHTTPEdge(t testing.TB) (*testEdge, *httptest.Server) {
	return newHTTPEdgeConfig(t, testConfig())
}

func newHTTPEdgeConfig(t testing.TB, cfg Config) (*testEdge, *httptest.Server) {
	t.Helper()
	te := newTestEdge(t, cfg)
	mux := http.NewServeMux()
	mux.Handle(NewHandler(te.Edge, connect.WithInterceptors(testAuthInterceptor())))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	te.run(t) // registered after srv.Close, so its Shutdown ends the streams first
	return te, srv
}

// testAuthInterceptor stands in for the app's: unary calls get the bearer
// token's identity.
func testAuthInterceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token, ok := bearerToken(req.Header()); ok {
				id, err := fakeTokens{}.Verify(token)
				if err != nil {
					return nil, connect.NewError(connect.CodeUnauthenticated, err)
				}
				ctx = auth.WithIdentity(ctx, id)
			}
			return next(ctx, req)
		}
	}
}

func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

func withBearer(ctx context.Context, token string) context.Context {
	ctx, info := connect.NewClientContext(ctx)
	info.RequestHeader().Set("Authorization", "Bearer "+token)
	return ctx
}

var (
	pingFrame = &edgev1.ClientFrame{Id: 1, Kind: &edgev1.ClientFrame_Ping{Ping: &edgev1.Ping{}}}
	sendFrame = &edgev1.ClientFrame{Id: 2, Kind: &edgev1.ClientFrame_SendMessage{SendMessage: &chatv1.SendMessageRequest{ConversationId: "c1", ClientMsgId: "m1"}}}
)

// connectSession is a session over the generated connect-go client.
type connectSession struct {
	t      *testing.T
	stream *connect.BidiStreamForClientSimple[edgev1.ConnectRequest, edgev1.ConnectResponse]
	id     string
}

func dialConnect(t *testing.T, srv *httptest.Server, token string) *connectSession {
	t.Helper()
	client := edgev1connect.NewEdgeServiceClient(h2cClient(), srv.URL)
	stream, err := client.Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stream.CloseResponse() })
	s := &connectSession{t: t, stream: stream}
	s.send(hello(1, token))
	w := s.recv().GetWelcome()
	if w == nil {
		t.Fatal("no welcome")
	}
	s.id = w.GetSessionId()
	return s
}

func (s *connectSession) send(f *edgev1.ClientFrame) {
	s.t.Helper()
	if err := s.stream.Send(&edgev1.ConnectRequest{Frame: f}); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

func (s *connectSession) recv() *edgev1.ServerFrame {
	s.t.Helper()
	res, err := s.stream.Receive()
	if err != nil {
		s.t.Fatalf("receive: %v", err)
	}
	return res.GetFrame()
}

// roundTrip checks the session still answers pings.
func (s *connectSession) roundTrip() {
	s.t.Helper()
	s.send(pingFrame)
	if f := s.recv(); f.GetPong() == nil || f.GetId() != 1 {
		s.t.Fatalf("got %v, want pong", f)
	}
}

func TestConnectClientSession(t *testing.T) {
	te, srv := newHTTPEdge(t)
	s := dialConnect(t, srv, "tok:u1:d1")
	s.roundTrip()
	s.send(sendFrame)
	if f := s.recv(); f.GetId() != 2 || f.GetResult().GetSendMessage().GetMessage().GetClientMsgId() != "m1" {
		t.Fatalf("got %v, want send result", f)
	}
	te.pushTo(t, messagePush("c1", 1), "u1")
	if p := s.recv().GetPush(); p.GetPushId() != 1 {
		t.Fatalf("got %v, want push 1", p)
	}
	s.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: 1}}})
	s.roundTrip()

	// Closing the request side ends the stream cleanly.
	if err := s.stream.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.stream.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestConnectHelloErrorsOverHTTP(t *testing.T) {
	_, srv := newHTTPEdge(t)
	client := edgev1connect.NewEdgeServiceClient(h2cClient(), srv.URL)
	for _, tc := range []struct {
		first *edgev1.ClientFrame
		code  connect.Code
	}{
		{pingFrame, connect.CodeUnauthenticated},
		{hello(1, "forged"), connect.CodeUnauthenticated},
		{hello(7, "tok:u1:d1"), connect.CodeFailedPrecondition},
	} {
		stream, err := client.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&edgev1.ConnectRequest{Frame: tc.first}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		if _, err := stream.Receive(); connect.CodeOf(err) != tc.code {
			t.Errorf("first frame %v: got %v, want %v", tc.first, err, tc.code)
		}
		_ = stream.CloseResponse()
	}
}

func TestSubscribeAndAckOverHTTP(t *testing.T) {
	te, srv := newHTTPEdge(t)
	client := edgev1connect.NewEdgeServiceClient(h2cClient(), srv.URL)
	ctx := t.Context()

	if stream, err := client.Subscribe(ctx, &edgev1.SubscribeRequest{ProtocolVersion: 1}); err == nil {
		if stream.Receive() || connect.CodeOf(stream.Err()) != connect.CodeUnauthenticated {
			t.Fatalf("subscribe without token: %v", stream.Err())
		}
		_ = stream.Close()
	} else if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("subscribe without token: %v", err)
	}

	stream, err := client.Subscribe(withBearer(ctx, "tok:u1:web"), &edgev1.SubscribeRequest{ProtocolVersion: 1, ClientName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	sid := stream.Msg().GetFrame().GetWelcome().GetSessionId()
	if sid == "" {
		t.Fatalf("first frame %v, want welcome", stream.Msg())
	}
	te.pushTo(t, messagePush("c1", 1), "u1")
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	if p := stream.Msg().GetFrame().GetPush(); p.GetPushId() != 1 {
		t.Fatalf("got %v, want push 1", p)
	}

	if _, err := client.Ack(withBearer(ctx, "tok:u2:web"), &edgev1.AckRequest{SessionId: sid, PushId: 1}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("ack by another user: %v, want not_found", err)
	}
	if _, err := client.Ack(ctx, &edgev1.AckRequest{SessionId: sid, PushId: 1}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("ack without identity: %v, want unauthenticated", err)
	}
	if _, err := client.Ack(withBearer(ctx, "tok:u1:web"), &edgev1.AckRequest{SessionId: sid, PushId: 1}); err != nil {
		t.Fatal(err)
	}
	s := te.hub.get(sid)
	s.mu.Lock()
	unacked := len(s.window)
	s.mu.Unlock()
	if unacked != 0 {
		t.Fatalf("%d pushes unacknowledged after Ack", unacked)
	}
	res, err := client.UpdatePresenceSubscription(withBearer(ctx, "tok:u1:web"), &edgev1.UpdatePresenceSubscriptionRequest{
		SessionId: sid, Subscription: &edgev1.PresenceSubscription{AddUserIds: []string{"u2"}},
	})
	if err != nil || len(res.GetSnapshot().GetPresences()) != 1 {
		t.Fatalf("presence: %v, %v", res, err)
	}
}

func dialGRPC(t *testing.T, srv *httptest.Server) edgev1.EdgeServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(strings.TrimPrefix(srv.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return edgev1.NewEdgeServiceClient(cc)
}

func grpcHello(t testing.TB, stream grpc.BidiStreamingClient[edgev1.ConnectRequest, edgev1.ConnectResponse], token string) {
	t.Helper()
	if err := stream.Send(&edgev1.ConnectRequest{Frame: hello(1, token)}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil || res.GetFrame().GetWelcome() == nil {
		t.Fatalf("welcome: %v, %v", res, err)
	}
}

func TestGRPCClientSession(t *testing.T) {
	_, srv := newHTTPEdge(t)
	stream, err := dialGRPC(t, srv).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	grpcHello(t, stream, "tok:u1:d1")
	for _, f := range []*edgev1.ClientFrame{pingFrame, sendFrame} {
		if err := stream.Send(&edgev1.ConnectRequest{Frame: f}); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil || res.GetFrame().GetId() != f.GetId() || res.GetFrame().GetError() != nil {
			t.Fatalf("answer to %v: %v, %v", f, res, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
}

// frameOfSize returns a send_message frame whose encoding is exactly n bytes.
func frameOfSize(t *testing.T, n int) *edgev1.ClientFrame {
	t.Helper()
	for body := n - 40; body <= n; body++ {
		f := &edgev1.ClientFrame{Id: 3, Kind: &edgev1.ClientFrame_SendMessage{SendMessage: &chatv1.SendMessageRequest{
			ConversationId: "c1",
			Content:        &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: strings.Repeat("x", body)}}},
		}}}
		if proto.Size(f) == n {
			return f
		}
	}
	t.Fatalf("no frame of %d bytes", n)
	return nil
}

func TestBadFramesEndOnlyTheirStream(t *testing.T) {
	te, srv := newHTTPEdge(t)
	bystander := dialConnect(t, srv, "tok:bystander:d1")
	grpcClient := dialGRPC(t, srv)
	maxFrame := te.cfg.MaxFrameBytes

	t.Run("frame of exactly MaxFrameBytes is accepted", func(t *testing.T) {
		stream, err := grpcClient.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		grpcHello(t, stream, "tok:u1:d1")
		if err := stream.Send(&edgev1.ConnectRequest{Frame: frameOfSize(t, maxFrame)}); err != nil {
			t.Fatal(err)
		}
		if res, err := stream.Recv(); err != nil || res.GetFrame().GetResult() == nil {
			t.Fatalf("answer %v, %v", res, err)
		}
	})

	t.Run("oversized frame", func(t *testing.T) {
		stream, err := grpcClient.Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		grpcHello(t, stream, "tok:u1:d1")
		if err := stream.Send(&edgev1.ConnectRequest{Frame: frameOfSize(t, maxFrame+1)}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("stream ended with %v, want ResourceExhausted", err)
		}
		bystander.roundTrip()
	})

	t.Run("garbage bytes", func(t *testing.T) {
		body, w := io.Pipe()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+edgev1connect.EdgeServiceConnectProcedure, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		helloMsg, err := proto.Marshal(&edgev1.ConnectRequest{Frame: hello(1, "tok:u1:d1")})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = w.Write(grpcEnvelope(helloMsg)) }()
		res, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		welcome := &edgev1.ConnectResponse{}
		if err := proto.Unmarshal(readGRPCMessage(t, res.Body), welcome); err != nil || welcome.GetFrame().GetWelcome() == nil {
			t.Fatalf("welcome: %v, %v", welcome, err)
		}
		// A varint that never ends is no protobuf message.
		garbage := bytes.Repeat([]byte{0xff}, 12)
		if _, err := w.Write(grpcEnvelope(garbage)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(res.Body); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		if got := res.Trailer.Get("Grpc-Status"); got != "3" { // INVALID_ARGUMENT
			t.Fatalf("grpc-status %q (%s), want 3", got, res.Trailer.Get("Grpc-Message"))
		}
		bystander.roundTrip()
	})
}

func TestClientThatStopsReadingIsReset(t *testing.T) {
	cfg := testConfig()
	cfg.QueueLimit = 16
	te, srv := newHTTPEdgeConfig(t, cfg)
	bystander := dialConnect(t, srv, "tok:u2:d1")

	// A raw HTTP/2 client that grants a 1 KiB stream window and never
	// extends it: after a few pushes the writer blocks in Send, the queue
	// overflows, and the session can only end by having its stream reset.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 10}))
	var headers bytes.Buffer
	enc := hpack.NewEncoder(&headers)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", srv.Listener.Addr().String()},
		{":path", edgev1connect.EdgeServiceConnectProcedure}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		must(enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	must(fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers.Bytes(), EndHeaders: true}))
	helloMsg, err := proto.Marshal(&edgev1.ConnectRequest{Frame: hello(1, "tok:u1:d1")})
	must(err)
	must(fr.WriteData(1, false, grpcEnvelope(helloMsg)))

	var welcome []byte
	for welcome == nil {
		f, err := fr.ReadFrame()
		must(err)
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				must(fr.WriteSettingsAck())
			}
		case *http2.DataFrame:
			welcome = append([]byte(nil), f.Data()...)
		}
	}
	res := &edgev1.ConnectResponse{}
	must(proto.Unmarshal(readGRPCMessage(t, bytes.NewReader(welcome)), res))
	sid := res.GetFrame().GetWelcome().GetSessionId()
	resetCh := make(chan struct{})
	go func() { // keep reading (not granting window) and note the reset
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == 1 {
				close(resetCh)
				return
			}
		}
	}()

	// Publish one push at a time while the writer keeps up; once it stops
	// draining the queue it is blocked in Send, and the rest overflow it.
	queued := func(s *session) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return -1
		}
		return len(s.queue)
	}
	blocked := false
	closedAt := time.Now()
	for i := 0; ; i++ {
		s := te.hub.get(sid)
		if s == nil {
			t.Fatal("session ended before it was closed")
		}
		if queued(s) < 0 {
			break
		}
		if i > 1000 {
			t.Fatal("session never overflowed")
		}
		push := messagePush("c1", uint64(i+1))
		push.Events[0].GetMessage().Content = &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: strings.Repeat("x", 500)}}}
		te.pushTo(t, push, "u1")
		closedAt = time.Now()
		for deadline := time.Now().Add(50 * time.Millisecond); !blocked && queued(s) > 0; {
			if time.Now().After(deadline) {
				blocked = true
			}
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case <-resetCh:
	case <-time.After(waitTime):
		t.Fatal("stream not reset")
	}
	waitUntil(t, "the stuck session to end", func() bool { return te.hub.get(sid) == nil })
	if d := time.Since(closedAt); d < cfg.CloseTimeout {
		t.Fatalf("stuck session ended %v after closing, before CloseTimeout: was its writer blocked?", d)
	}
	// finish leaves the hub first, then unregisters.
	waitUntil(t, "the stuck session to be unregistered", func() bool { return !te.registry.isLive(sid) })
	bystander.roundTrip()
}

func grpcEnvelope(msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func readGRPCMessage(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var header [5]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, binary.BigEndian.Uint32(header[1:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		t.Fatal(err)
	}
	return msg
}
