package floor

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/grpc"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
)

type grpcEdge struct {
	edgev1.UnimplementedEdgeServiceServer
	s *Server
}

func (g grpcEdge) Connect(stream grpc.BidiStreamingServer[edgev1.ConnectRequest, edgev1.ConnectResponse]) error {
	return g.s.serve(grpcFrames{stream})
}

type grpcFrames struct {
	grpc.BidiStreamingServer[edgev1.ConnectRequest, edgev1.ConnectResponse]
}

func (f grpcFrames) Receive() (*edgev1.ConnectRequest, error) { return f.Recv() }

type grpcMessages struct {
	chatv1.UnimplementedMessageServiceServer
	s *Server
}

func (g grpcMessages) SendMessage(_ context.Context, req *chatv1.SendMessageRequest) (*chatv1.SendMessageResponse, error) {
	return g.s.sendMessage(req), nil
}

type connectEdge struct {
	edgev1connect.UnimplementedEdgeServiceHandler
	s *Server
}

func (c connectEdge) Connect(_ context.Context, stream *connect.BidiStream[edgev1.ConnectRequest, edgev1.ConnectResponse]) error {
	return c.s.serve(stream)
}

type connectMessages struct {
	chatv1connect.UnimplementedMessageServiceHandler
	s *Server
}

func (c connectMessages) SendMessage(_ context.Context, req *chatv1.SendMessageRequest) (*chatv1.SendMessageResponse, error) {
	return c.s.sendMessage(req), nil
}
