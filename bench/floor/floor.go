// Package floor is a bare fanout server for benchmarks: EdgeService.Connect
// and MessageService.SendMessage on plain grpc-go or plain connect-go, and
// nothing else (no auth, storage, bus, merging or resends). Each send is
// pushed to every connected stream with one Send per stream, so a fanout
// benchmark run against it measures the transport's own cost per delivery,
// the floor under Waggle's.
package floor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
)

// Transports the floor serves.
const (
	TransportGRPC    = "grpc"    // grpc.NewServer with default options
	TransportConnect = "connect" // connect-go handlers on net/http with h2c
)

// QueueLimit is how many pushes a stream may have waiting, as the edge's
// session queue; a stream past it is closed rather than slowing the others.
const QueueLimit = 1024

// compressMinBytes matches the edge: small pushes are not gzipped.
const compressMinBytes = 4 << 10

// Server holds the connected streams and the one sequence of sends.
type Server struct {
	log *slog.Logger
	seq atomic.Uint64

	mu      sync.RWMutex
	streams map[*stream]struct{}
}

// New returns a server with no streams; log may be nil.
func New(log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{log: log, streams: map[*stream]struct{}{}}
}

// Streams is how many streams are connected now.
func (s *Server) Streams() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.streams)
}

// Serve serves transport on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener, transport string) error {
	switch transport {
	case TransportGRPC:
		g := s.GRPCServer()
		stop := context.AfterFunc(ctx, g.Stop)
		defer stop()
		if err := g.Serve(l); err != nil && ctx.Err() == nil {
			return fmt.Errorf("floor: grpc: %w", err)
		}
		return nil
	case TransportConnect:
		hs := &http.Server{Handler: s.ConnectHandler(), Protocols: new(http.Protocols), ReadHeaderTimeout: 10 * time.Second}
		hs.Protocols.SetHTTP1(true)
		hs.Protocols.SetUnencryptedHTTP2(true)
		stop := context.AfterFunc(ctx, func() { _ = hs.Close() })
		defer stop()
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("floor: http: %w", err)
		}
		return nil
	}
	return fmt.Errorf("floor: transport %q: want grpc or connect", transport)
}

// GRPCServer serves both services on grpc-go's own transport, with its
// default options.
func (s *Server) GRPCServer() *grpc.Server {
	g := grpc.NewServer()
	edgev1.RegisterEdgeServiceServer(g, grpcEdge{s: s})
	chatv1.RegisterMessageServiceServer(g, grpcMessages{s: s})
	return g
}

// ConnectHandler serves both services with connect-go.
func (s *Server) ConnectHandler() http.Handler {
	mux := http.NewServeMux()
	opt := connect.WithCompressMinBytes(compressMinBytes)
	mux.Handle(edgev1connect.NewEdgeServiceHandler(connectEdge{s: s}, opt))
	mux.Handle(chatv1connect.NewMessageServiceHandler(connectMessages{s: s}, opt))
	return mux
}

// stream is one connected session.
type stream struct {
	out      chan *chatv1.Event
	pong     chan struct{} // one pending pong; more pings coalesce
	full     chan struct{} // closed when out overflowed
	fullOnce sync.Once
}

// frames is what the two transports' streams have in common.
type frames interface {
	Send(*edgev1.ConnectResponse) error
	Receive() (*edgev1.ConnectRequest, error)
}

// serve runs one session: the Hello, the Welcome, then one Send per push
// on this goroutine while another reads acks and pings.
func (s *Server) serve(f frames) error {
	req, err := f.Receive()
	if err != nil {
		return err
	}
	if req.GetFrame().GetHello() == nil {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("first frame must be hello"))
	}
	welcome := &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Welcome{Welcome: &edgev1.Welcome{
		SessionId: uuid.NewString(), ProtocolVersion: 1, EdgeId: "floor", MaxFrameBytes: 64 << 10,
		HeartbeatInterval: durationpb.New(25 * time.Second), SessionTimeout: durationpb.New(60 * time.Second)}}}
	if err := f.Send(&edgev1.ConnectResponse{Frame: welcome}); err != nil {
		return err
	}
	st := &stream{out: make(chan *chatv1.Event, QueueLimit), pong: make(chan struct{}, 1), full: make(chan struct{})}
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
	}()

	ended := make(chan error, 1)
	go func() {
		for {
			req, err := f.Receive()
			if err != nil {
				ended <- err
				return
			}
			switch req.GetFrame().GetKind().(type) {
			case *edgev1.ClientFrame_Ack:
				// Cumulative acks are read and dropped: the floor never
				// resends, so it keeps no window.
			case *edgev1.ClientFrame_Ping:
				select {
				case st.pong <- struct{}{}:
				default:
				}
			}
		}
	}()
	var pushID uint64
	for {
		var frame *edgev1.ServerFrame
		select {
		case err := <-ended:
			if isClientGone(err) {
				return nil
			}
			return err
		case <-st.full:
			return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("session too slow: %d pushes pending", QueueLimit))
		case <-st.pong:
			frame = &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Pong{Pong: &edgev1.Pong{}}}
		case ev := <-st.out:
			pushID++
			frame = &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Push{Push: &edgev1.Push{PushId: pushID, Events: []*chatv1.Event{ev}}}}
		}
		if err := f.Send(&edgev1.ConnectResponse{Frame: frame}); err != nil {
			return err
		}
	}
}

func isClientGone(err error) bool {
	return err == nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || connect.CodeOf(err) == connect.CodeCanceled
}

// sendMessage gives the message the next seq and queues it on every
// stream; nothing is stored.
func (s *Server) sendMessage(req *chatv1.SendMessageRequest) *chatv1.SendMessageResponse {
	seq := s.seq.Add(1)
	now := timestamppb.Now()
	msg := &chatv1.Message{MessageId: uuid.NewString(), ConversationId: req.GetConversationId(), Seq: seq,
		SenderUserId: floorUser, SenderDeviceId: floorDevice, ClientMsgId: req.GetClientMsgId(), Content: req.GetContent(), CreateTime: now}
	ev := &chatv1.Event{ConversationId: req.GetConversationId(), Seq: seq, CreateTime: now, ActorUserId: floorUser,
		Kind: &chatv1.Event_Message{Message: msg}}
	s.mu.RLock()
	for st := range s.streams {
		select {
		case st.out <- ev:
		default:
			st.fullOnce.Do(func() {
				s.log.Warn("floor: a stream fell behind; closing it", "queued", QueueLimit)
				close(st.full)
			})
		}
	}
	s.mu.RUnlock()
	return &chatv1.SendMessageResponse{Message: msg}
}

// The sender's ids on every message: UUID-sized, so pushes weigh what
// Waggle's do.
const (
	floorUser   = "00000000-0000-4000-8000-000000000001"
	floorDevice = "00000000-0000-4000-8000-000000000002"
)
