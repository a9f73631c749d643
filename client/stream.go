package client

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/grpc"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
)

// Stream is one session's bidirectional frame stream to an edge. Send and
// Recv may run on different goroutines; Send is not called concurrently.
type Stream interface {
	Send(*edgev1.ClientFrame) error
	Recv() (*edgev1.ServerFrame, error)
	// Close ends the stream and unblocks a pending Recv.
	Close() error
}

// Dialer opens a stream to one edge. ctx bounds the dial and the stream.
// The client cancels it only after it closed the stream, so that a session
// it ends can still send its last ack.
type Dialer interface {
	Dial(ctx context.Context) (Stream, error)
}

// ConnectDialer dials an edge with connect-go (Connect, gRPC or gRPC-Web
// protocol, as opts choose). httpClient must speak HTTP/2 for a
// bidirectional stream.
func ConnectDialer(httpClient connect.HTTPClient, baseURL string, opts ...connect.ClientOption) Dialer {
	return connectDialer{client: edgev1connect.NewEdgeServiceClient(httpClient, baseURL, opts...)}
}

type connectDialer struct {
	client edgev1connect.EdgeServiceClient
}

func (d connectDialer) Dial(ctx context.Context) (Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	bidi, err := d.client.Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &connectStream{bidi: bidi, cancel: cancel}, nil
}

type connectStream struct {
	bidi   *connect.BidiStreamForClientSimple[edgev1.ConnectRequest, edgev1.ConnectResponse]
	cancel context.CancelFunc
}

func (s *connectStream) Send(f *edgev1.ClientFrame) error {
	return s.bidi.Send(&edgev1.ConnectRequest{Frame: f})
}

func (s *connectStream) Recv() (*edgev1.ServerFrame, error) {
	res, err := s.bidi.Receive()
	if err != nil {
		return nil, err
	}
	if res.GetFrame() == nil {
		return nil, fmt.Errorf("edge sent an empty response")
	}
	return res.GetFrame(), nil
}

func (s *connectStream) Close() error {
	s.cancel()
	_ = s.bidi.CloseRequest()
	return s.bidi.CloseResponse()
}

// GRPCDialer dials an edge with grpc-go over conn.
func GRPCDialer(conn grpc.ClientConnInterface) Dialer {
	return grpcDialer{client: edgev1.NewEdgeServiceClient(conn)}
}

type grpcDialer struct {
	client edgev1.EdgeServiceClient
}

func (d grpcDialer) Dial(ctx context.Context) (Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	bidi, err := d.client.Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &grpcStream{bidi: bidi, cancel: cancel}, nil
}

type grpcStream struct {
	bidi   grpc.BidiStreamingClient[edgev1.ConnectRequest, edgev1.ConnectResponse]
	cancel context.CancelFunc
}

func (s *grpcStream) Send(f *edgev1.ClientFrame) error {
	return s.bidi.Send(&edgev1.ConnectRequest{Frame: f})
}

func (s *grpcStream) Recv() (*edgev1.ServerFrame, error) {
	res, err := s.bidi.Recv()
	if err != nil {
		return nil, err
	}
	if res.GetFrame() == nil {
		return nil, fmt.Errorf("edge sent an empty response")
	}
	return res.GetFrame(), nil
}

func (s *grpcStream) Close() error {
	s.cancel()
	return nil
}
