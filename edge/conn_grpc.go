package edge

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/wagglechat/waggle/auth"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// NewGRPCServer serves EdgeService on grpc-go's own HTTP/2 transport, for a
// listener of its own. Measured on this machine (see docs/benchmarks.md),
// it costs the server a fraction of the CPU per push that connect-go over
// net/http does; the main listener keeps serving Connect, gRPC-Web and
// browsers. It also answers health checks and reflection, so grpcurl works
// on either port.
func NewGRPCServer(e *Edge, opts ...grpc.ServerOption) *grpc.Server {
	overhead := 1 + protowire.SizeVarint(uint64(e.cfg.MaxFrameBytes))
	s := grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(e.cfg.MaxFrameBytes + overhead),
		grpc.MaxConcurrentStreams(10_000),
		grpc.InTapHandle(interruptible),
		// Idle sessions hold no write buffer: it goes back to a pool after
		// each flush.
		grpc.SharedWriteBuffer(true),
	}, opts...)...)
	edgev1.RegisterEdgeServiceServer(s, grpcService{e: e})
	hs := health.NewServer()
	hs.SetServingStatus(edgev1.EdgeService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return s
}

// interruptKey holds a stream's interrupt, the cancel of the context
// interruptible gave it.
type interruptKey struct{}

// interruptible gives every stream a context the edge can cancel. grpc-go
// has no other way to make a blocked Recv or Send return: both wait on the
// stream's context, which the tap handle supplies (grpc.InTapHandle,
// experimental in grpc-go). The handler then returns and the status is
// written as usual.
func interruptible(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancel(ctx)
	// The peer names the stream's connection, for the hello gate.
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil && p.LocalAddr != nil {
		ctx = withConnID(ctx, p.LocalAddr.String(), p.Addr.String())
	}
	return context.WithValue(ctx, interruptKey{}, cancel), nil
}

// interrupt cancels a stream's context from interruptible.
func interrupt(ctx context.Context) {
	if cancel, ok := ctx.Value(interruptKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

// grpcService implements edgev1.EdgeServiceServer over the core.
type grpcService struct {
	edgev1.UnimplementedEdgeServiceServer
	e *Edge
}

// Connect and Subscribe serve a session on the handler's goroutine.
func (g grpcService) Connect(stream grpc.BidiStreamingServer[edgev1.ConnectRequest, edgev1.ConnectResponse]) error {
	return grpcStatus(g.e.Serve(&grpcBidiConn{stream: stream}))
}

func (g grpcService) Subscribe(req *edgev1.SubscribeRequest, stream grpc.ServerStreamingServer[edgev1.SubscribeResponse]) error {
	token, ok := grpcBearer(stream.Context())
	if !ok {
		return status.Error(codes.Unauthenticated, "missing bearer token in the authorization metadata")
	}
	return grpcStatus(g.e.ServeSubscribe(&grpcServerConn{stream: stream},
		&edgev1.Hello{ProtocolVersion: req.GetProtocolVersion(), AccessToken: token, ClientName: req.GetClientName()}))
}

func (g grpcService) Ack(ctx context.Context, req *edgev1.AckRequest) (*edgev1.AckResponse, error) {
	caller, err := g.caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := g.e.Ack(caller, req.GetSessionId(), req.GetPushId()); err != nil {
		return nil, grpcStatus(err)
	}
	return &edgev1.AckResponse{}, nil
}

func (g grpcService) UpdatePresenceSubscription(ctx context.Context, req *edgev1.UpdatePresenceSubscriptionRequest) (*edgev1.UpdatePresenceSubscriptionResponse, error) {
	caller, err := g.caller(ctx)
	if err != nil {
		return nil, err
	}
	snap, err := g.e.UpdatePresenceSubscription(auth.WithIdentity(ctx, caller), caller, req.GetSessionId(), req.GetSubscription())
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &edgev1.UpdatePresenceSubscriptionResponse{Snapshot: snap}, nil
}

// caller verifies the bearer token of a unary call; this listener has no
// interceptor chain of its own.
func (g grpcService) caller(ctx context.Context) (auth.Identity, error) {
	token, ok := grpcBearer(ctx)
	if !ok {
		return auth.Identity{}, status.Error(codes.Unauthenticated, "missing bearer token in the authorization metadata")
	}
	id, err := g.e.verify(token)
	if err != nil {
		return auth.Identity{}, grpcStatus(err)
	}
	return id, nil
}

func grpcBearer(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if scheme, token, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") && token != "" {
			return token, true
		}
	}
	return "", false
}

// grpcStatus maps the core's Error in err to a gRPC status, once, on the
// way out; codes convert by value (see Code). Any other error is unknown.
func grpcStatus(err error) error {
	if err == nil {
		return nil
	}
	if e := new(Error); errors.As(err, &e) {
		return status.Error(codes.Code(e.Code), e.Message())
	}
	return status.Error(codes.Unknown, err.Error())
}

// grpcBidiConn adapts grpc-go's bidi stream to FrameConn.
type grpcBidiConn struct {
	stream grpc.BidiStreamingServer[edgev1.ConnectRequest, edgev1.ConnectResponse]
}

func (c *grpcBidiConn) Context() context.Context { return c.stream.Context() }
func (c *grpcBidiConn) Abort()                   { interrupt(c.stream.Context()) }
func (c *grpcBidiConn) InterruptRecv()           { interrupt(c.stream.Context()) }
func (c *grpcBidiConn) interruptResets()         {}

func (c *grpcBidiConn) Recv() (*edgev1.ClientFrame, error) {
	req, err := c.stream.Recv()
	if err != nil {
		return nil, fromStatus(err)
	}
	return req.GetFrame(), nil
}

func (c *grpcBidiConn) Send(f *edgev1.ServerFrame) error {
	return c.stream.Send(&edgev1.ConnectResponse{Frame: f})
}

// grpcServerConn adapts grpc-go's server stream to FrameSender.
type grpcServerConn struct {
	stream grpc.ServerStreamingServer[edgev1.SubscribeResponse]
}

func (c *grpcServerConn) Context() context.Context { return c.stream.Context() }
func (c *grpcServerConn) Abort()                   { interrupt(c.stream.Context()) }

func (c *grpcServerConn) Send(f *edgev1.ServerFrame) error {
	return c.stream.Send(&edgev1.SubscribeResponse{Frame: f})
}

// fromStatus turns a grpc-go receive error into the core's Error (io.EOF
// passes through: a clean end).
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	return newError(Code(st.Code()), errors.New(st.Message()))
}
