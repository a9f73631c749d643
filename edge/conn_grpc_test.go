package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wagglechat/waggle/auth"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// newGRPCEdge serves te on grpc-go's transport on a loopback port.
func newGRPCEdge(t testing.TB) (*testEdge, string) {
	return newGRPCEdgeConfig(t, testConfig())
}

func newGRPCEdgeConfig(t testing.TB, cfg Config) (*testEdge, string) {
	t.Helper()
	te := newTestEdge(t, cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewGRPCServer(te.Edge)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	te.run(t)
	return te, lis.Addr().String()
}

func grpcClient(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestGRPCTransportSession(t *testing.T) {
	te, addr := newGRPCEdge(t)
	cc := grpcClient(t, addr)
	edge := edgev1.NewEdgeServiceClient(cc)

	stream, err := edge.Connect(t.Context())
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
	te.pushTo(t, messagePush("c1", 1), "u1")
	res, err := stream.Recv()
	if err != nil || len(res.GetFrame().GetPush().GetEvents()) != 1 {
		t.Fatalf("push: %v, %v", res, err)
	}

	// A browser-style session with unary acks on the same port.
	authed := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer tok:u2:d1")
	sub, err := edge.Subscribe(authed, &edgev1.SubscribeRequest{ProtocolVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	w, err := sub.Recv()
	if err != nil || w.GetFrame().GetWelcome() == nil {
		t.Fatalf("subscribe welcome: %v, %v", w, err)
	}
	if _, err := edge.Ack(authed, &edgev1.AckRequest{SessionId: w.GetFrame().GetWelcome().GetSessionId()}); err != nil {
		t.Fatal(err)
	}
	other := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer tok:u3:d1")
	if _, err := edge.Ack(other, &edgev1.AckRequest{SessionId: w.GetFrame().GetWelcome().GetSessionId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("acking another user's session: %v, want NotFound", err)
	}
	if _, err := edge.Ack(t.Context(), &edgev1.AckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ack without a token: %v, want Unauthenticated", err)
	}

	// An oversized frame ends only its own stream, with ResourceExhausted.
	big, err := edge.Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	grpcHello(t, big, "tok:u4:d1")
	_ = big.Send(&edgev1.ConnectRequest{Frame: frameOfSize(t, defaultMaxFrameBytes+1)})
	if _, err := big.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized frame: %v, want ResourceExhausted", err)
	}
	if err := stream.Send(&edgev1.ConnectRequest{Frame: pingFrame}); err != nil {
		t.Fatal(err)
	}
	if res, err := stream.Recv(); err != nil || res.GetFrame().GetPong() == nil {
		t.Fatalf("first session after the other's bad frame: %v, %v", res, err)
	}

	h, err := healthpb.NewHealthClient(cc).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "waggle.edge.v1.EdgeService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v, %v", h, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
}

// benchmarkPushes measures the server side of pushing to sessions: 100
// sessions, one HTTP/2 connection each, every publish pushing one small
// message to all of them; clients ack each push, as the SDK does. The loop
// ends when every client received every push.
func benchmarkPushes(b *testing.B, te *testEdge, addr string) {
	const sessions = 100
	var received atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); wg.Wait() }()
	users := make([]string, sessions)
	for i := range sessions {
		users[i] = fmt.Sprint("u", i)
		te.streams.groups[users[i]] = []*chatv1.GroupMembership{{ConversationId: "g1"}}
		s, err := edgev1.NewEdgeServiceClient(grpcClient(b, addr)).Connect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		grpcHello(b, s, "tok:"+users[i]+":d1")
		wg.Go(func() {
			for {
				res, err := s.Recv()
				if err != nil {
					return
				}
				if p := res.GetFrame().GetPush(); p != nil {
					received.Add(int64(len(p.GetEvents()))) // pending pushes merge into one frame
					_ = s.Send(&edgev1.ConnectRequest{Frame: &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: p.GetPushId()}}}})
				}
			}
		})
	}
	b.ResetTimer()
	for i := range b.N {
		// One group message, encoded once for every session.
		te.toGroup(b, "g1", &busv1.Envelope{Push: messagePush("g1", uint64(i+1))})
		// Stay within the sessions' queue limit, as a healthy client does
		// by reading: an edge drops sessions that fall further behind.
		waitFor(b, func() bool { return int64(i-64)*sessions <= received.Load() })
	}
	waitFor(b, func() bool { return received.Load() >= int64(b.N*sessions) })
	b.StopTimer()
	b.ReportMetric(float64(received.Load())/b.Elapsed().Seconds(), "pushes/s")
}

// waitFor spins until cond holds, failing the benchmark after 30 s (a
// session the edge dropped would otherwise hang it).
func waitFor(b *testing.B, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("pushes stopped arriving: a session was dropped")
		}
		runtime.Gosched()
	}
}

// Compare the two transports carrying the same session core:
//
//	go test ./edge -run '^$' -bench 'Push.*Transport' -benchtime 20000x -cpu 2
func BenchmarkPushGRPCTransport(b *testing.B) {
	te, addr := newGRPCEdge(b)
	benchmarkPushes(b, te, addr)
}

func BenchmarkPushConnectTransport(b *testing.B) {
	te, srv := newHTTPEdge(b)
	benchmarkPushes(b, te, strings.TrimPrefix(srv.URL, "http://"))
}

// A refused token's detail stays in the log: the caller sees the sentinel.
func TestGRPCUnaryTokenDetailHidden(t *testing.T) {
	_, addr := newGRPCEdge(t)
	client := edgev1.NewEdgeServiceClient(grpcClient(t, addr))
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer forged")
	_, err := client.Ack(ctx, &edgev1.AckRequest{SessionId: "s1", PushId: 1})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != auth.ErrInvalidToken.Error() {
		t.Fatalf("ack with a forged token: %v, want unauthenticated %q", err, auth.ErrInvalidToken)
	}
}
