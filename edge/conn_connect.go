package edge

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/wagglechat/waggle/auth"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
)

// compressMinBytes keeps pushes and answers uncompressed but for the
// largest sync pages. gzip costs about ten times the CPU of the write
// itself (ENGINEERING measurements: ~50 µs against ~5.6 µs for a 200-byte
// push), and the writer merges pending pushes into frames of several KiB:
// compressing those took 70 % of an edge's CPU pushing to a 1,000-member
// group at 200 messages a second. The grpc-go listener compresses nothing.
const compressMinBytes = 1 << 20

// NewHandler returns the path and HTTP handler of EdgeService, served by e
// over connect-go (Connect, gRPC and gRPC-Web). It applies opts (the app's
// interceptors: the unary calls expect auth.Identity in their context),
// then e.HandlerOptions, which win over a general message size limit.
//
// The handler also lets the edge interrupt a stream's reads and writes
// (a closed session's, or one whose client stopped reading), which mounting
// edgev1connect.NewEdgeServiceHandler directly would lose.
func NewHandler(e *Edge, opts ...connect.HandlerOption) (string, http.Handler) {
	path, h := edgev1connect.NewEdgeServiceHandler(connectService{e}, append(slices.Clone(opts), e.HandlerOptions()...)...)
	return path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case edgev1connect.EdgeServiceConnectProcedure, edgev1connect.EdgeServiceSubscribeProcedure:
			ctx := context.WithValue(r.Context(), responseControllerKey{}, http.NewResponseController(w))
			// RemoteAddr names the TCP connection; HTTP/2 streams share it.
			local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
			if local != nil {
				ctx = withConnID(ctx, local.String(), r.RemoteAddr)
			}
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// HandlerOptions are the connect handler options EdgeService needs: the
// frame size limit (an oversized frame ends its stream with
// resource_exhausted, an undecodable one with invalid_argument, before the
// session sees it) and no compression of small messages.
func (e *Edge) HandlerOptions() []connect.HandlerOption {
	// A ConnectRequest is its ClientFrame plus a tag and a length prefix.
	overhead := 1 + protowire.SizeVarint(uint64(e.cfg.MaxFrameBytes))
	return []connect.HandlerOption{
		connect.WithReadMaxBytes(e.cfg.MaxFrameBytes + overhead),
		connect.WithCompressMinBytes(compressMinBytes),
	}
}

type responseControllerKey struct{}

// streamAborter interrupts a stream's reads or writes by setting a
// deadline in the past, which makes a blocked Read or Write return.
type streamAborter struct{ rc *http.ResponseController }

func abortFromContext(ctx context.Context) streamAborter {
	rc, _ := ctx.Value(responseControllerKey{}).(*http.ResponseController)
	return streamAborter{rc}
}

func (a streamAborter) Abort() {
	if a.rc != nil {
		_ = a.rc.SetWriteDeadline(time.Unix(1, 0))
	}
}

func (a streamAborter) InterruptRecv() {
	if a.rc != nil {
		_ = a.rc.SetReadDeadline(time.Unix(1, 0))
	}
}

// connectService implements edgev1connect.EdgeServiceHandler over the core.
type connectService struct{ e *Edge }

var _ edgev1connect.EdgeServiceHandler = connectService{}

func (c connectService) Connect(ctx context.Context, stream *connect.BidiStream[edgev1.ConnectRequest, edgev1.ConnectResponse]) error {
	return connectError(c.e.Serve(&connectBidiConn{ctx: ctx, stream: stream, streamAborter: abortFromContext(ctx), json: isJSON(stream.RequestHeader())}))
}

// isJSON reports whether a request uses a JSON codec, which cannot write
// the edge's pre-encoded frames (see materialize).
func isJSON(h http.Header) bool { return strings.Contains(h.Get("Content-Type"), "json") }

func (c connectService) Subscribe(ctx context.Context, req *edgev1.SubscribeRequest, stream *connect.ServerStream[edgev1.SubscribeResponse]) error {
	var header http.Header
	if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
		header = info.RequestHeader()
	}
	token, ok := bearerToken(header)
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("missing bearer token in the Authorization header"))
	}
	return connectError(c.e.ServeSubscribe(
		&connectServerConn{ctx: ctx, stream: stream, streamAborter: abortFromContext(ctx), json: isJSON(header)},
		&edgev1.Hello{ProtocolVersion: req.GetProtocolVersion(), AccessToken: token, ClientName: req.GetClientName()},
	))
}

func (c connectService) Ack(ctx context.Context, req *edgev1.AckRequest) (*edgev1.AckResponse, error) {
	caller, ok := auth.FromContext(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no caller identity"))
	}
	if err := c.e.Ack(caller, req.GetSessionId(), req.GetPushId()); err != nil {
		return nil, connectError(err)
	}
	return &edgev1.AckResponse{}, nil
}

func (c connectService) UpdatePresenceSubscription(ctx context.Context, req *edgev1.UpdatePresenceSubscriptionRequest) (*edgev1.UpdatePresenceSubscriptionResponse, error) {
	caller, ok := auth.FromContext(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no caller identity"))
	}
	snap, err := c.e.UpdatePresenceSubscription(ctx, caller, req.GetSessionId(), req.GetSubscription())
	if err != nil {
		return nil, connectError(err)
	}
	return &edgev1.UpdatePresenceSubscriptionResponse{Snapshot: snap}, nil
}

// connectError maps the core's Error in err to a Connect error, once, on
// the way out; codes convert by value (see Code). Any other error, such as
// a failed write's, passes as it is.
func connectError(err error) error {
	if e := new(Error); errors.As(err, &e) {
		return connect.NewError(connect.Code(e.Code), e.Err)
	}
	return err
}

// fromConnectError is the core's Error for a Connect error: a failed read's,
// or a service's (downstream.go).
func fromConnectError(ce *connect.Error) *Error {
	return newError(Code(ce.Code()), errors.New(ce.Message()))
}

func bearerToken(h http.Header) (string, bool) {
	scheme, token, ok := strings.Cut(h.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

// connectBidiConn adapts connect-go's bidi stream to FrameConn.
type connectBidiConn struct {
	ctx    context.Context
	stream *connect.BidiStream[edgev1.ConnectRequest, edgev1.ConnectResponse]
	json   bool
	streamAborter
}

func (c *connectBidiConn) Context() context.Context { return c.ctx }

func (c *connectBidiConn) Recv() (*edgev1.ClientFrame, error) {
	req, err := c.stream.Receive()
	if err != nil {
		// A clean end is io.EOF, which connect-go may wrap in an Error.
		if ce := new(connect.Error); !errors.Is(err, io.EOF) && errors.As(err, &ce) {
			return nil, fromConnectError(ce)
		}
		return nil, err
	}
	return req.GetFrame(), nil
}

func (c *connectBidiConn) Send(f *edgev1.ServerFrame) error {
	f, err := forCodec(f, c.json)
	if err != nil {
		return err
	}
	return c.stream.Send(&edgev1.ConnectResponse{Frame: f})
}

func forCodec(f *edgev1.ServerFrame, json bool) (*edgev1.ServerFrame, error) {
	if !json {
		return f, nil
	}
	return materialize(f)
}

// connectServerConn adapts connect-go's server stream to FrameSender.
type connectServerConn struct {
	ctx    context.Context
	stream *connect.ServerStream[edgev1.SubscribeResponse]
	json   bool
	streamAborter
}

func (c *connectServerConn) Context() context.Context { return c.ctx }

func (c *connectServerConn) Send(f *edgev1.ServerFrame) error {
	f, err := forCodec(f, c.json)
	if err != nil {
		return err
	}
	return c.stream.Send(&edgev1.SubscribeResponse{Frame: f})
}
