package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
)

// leanStream is an EdgeService.Connect stream whose codec parses what it
// receives into a leanFrame rather than a generated message. Sending, rare,
// marshals generated frames. Send and Recv may run on different
// goroutines; neither is called concurrently with itself.
type leanStream interface {
	Send(*edgev1.ClientFrame) error
	// Recv parses the next ConnectResponse into f. An empty message may
	// leave f untouched (connect-go skips the codec for it).
	Recv(f *leanFrame) error
	// Close ends the stream and unblocks a pending Recv.
	Close() error
}

// dialLean opens a lean stream on a TCP connection of its own, and
// returns it with what closes the connection. ctx bounds the stream.
func dialLean(ctx context.Context, protocol, edge string) (leanStream, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	if protocol == ProtocolGRPC {
		conn, err := grpcConn(edge)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		cs, err := conn.NewStream(ctx, &edgev1.EdgeService_ServiceDesc.Streams[0], edgev1.EdgeService_Connect_FullMethodName,
			grpc.ForceCodecV2(grpcLeanCodec{encoding.GetCodecV2(grpcproto.Name)}))
		if err != nil {
			cancel()
			_ = conn.Close()
			return nil, nil, fmt.Errorf("dial %s: %w", edge, err)
		}
		return grpcLean{cs: cs, cancel: cancel}, func() { _ = conn.Close() }, nil
	}
	hc := h2cClient()
	c := connect.NewClient[edgev1.ConnectRequest, leanFrame](hc, strings.TrimRight(edge, "/")+edgev1connect.EdgeServiceConnectProcedure,
		connect.WithCodec(connectLeanCodec{}))
	conn, err := c.CallBidiStream(ctx).Conn()
	if err == nil {
		// The headers go now, as with the generated client, so a refused
		// connection fails the dial.
		err = conn.Send(nil)
	}
	if err != nil {
		cancel()
		hc.CloseIdleConnections()
		return nil, nil, fmt.Errorf("dial %s: %w", edge, err)
	}
	return connectLean{conn: conn, cancel: cancel}, hc.CloseIdleConnections, nil
}

type grpcLean struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc
}

func (s grpcLean) Send(f *edgev1.ClientFrame) error {
	return s.cs.SendMsg(&edgev1.ConnectRequest{Frame: f})
}

func (s grpcLean) Recv(f *leanFrame) error { return s.cs.RecvMsg(f) }

func (s grpcLean) Close() error {
	s.cancel()
	return nil
}

// grpcLeanCodec marshals with grpc-go's proto codec and parses into a
// leanFrame while grpc-go still holds the received buffers.
type grpcLeanCodec struct{ encoding.CodecV2 }

func (c grpcLeanCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*leanFrame)
	if !ok {
		return fmt.Errorf("lean codec: cannot parse into %T", v)
	}
	if len(data) == 1 {
		return f.parse(data[0].ReadOnlyData())
	}
	// A message split over several buffers is joined in f's own.
	f.buf = slices.Grow(f.buf[:0], data.Len())[:data.Len()]
	data.CopyTo(f.buf)
	return f.parse(f.buf)
}

type connectLean struct {
	conn   connect.StreamingClientConn
	cancel context.CancelFunc
}

func (s connectLean) Send(f *edgev1.ClientFrame) error {
	return s.conn.Send(&edgev1.ConnectRequest{Frame: f})
}

func (s connectLean) Recv(f *leanFrame) error { return s.conn.Receive(f) }

func (s connectLean) Close() error {
	s.cancel()
	_ = s.conn.CloseRequest()
	return s.conn.CloseResponse()
}

// connectLeanCodec is connect-go's codec for the lean stream: proto
// marshalling for what it sends, a leanFrame for what it receives.
// connect-go reuses the bytes it unmarshals from; parse keeps none.
type connectLeanCodec struct{}

func (connectLeanCodec) Name() string { return grpcproto.Name } // "proto" in connect-go too

func (connectLeanCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("lean codec: cannot marshal %T", v)
	}
	return proto.Marshal(m)
}

func (connectLeanCodec) Unmarshal(b []byte, v any) error {
	f, ok := v.(*leanFrame)
	if !ok {
		return fmt.Errorf("lean codec: cannot parse into %T", v)
	}
	return f.parse(b)
}
