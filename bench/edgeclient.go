package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc/status"

	"github.com/wagglechat/waggle/client"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// edgeClient is a minimal EdgeService.Connect session, far cheaper than an
// SDK client: it sends Hello, tallies the events of each push, acks by the
// ack policy (see acker) and pings every heartbeat_interval. It answers
// nothing else, keeps no state beyond the tally and never reconnects.
type edgeClient struct {
	stream         client.Stream
	closeTransport func()
	conv           string // events of other conversations are ignored ("": none are)
	tally          *tally
	win            *window
	done           chan struct{} // the reader has returned
	endCode        atomic.Value  // string: why the stream ended by itself, the first reason

	sendMu sync.Mutex // Stream.Send is not safe for concurrent use

	mu        sync.Mutex
	ack       acker
	ackTimer  *time.Timer
	ping      *time.Timer
	heartbeat time.Duration
	closed    bool
}

// dialEdge opens one session on a TCP connection of its own and returns
// once the Welcome has arrived.
func dialEdge(ctx context.Context, protocol, edge, token, conv string, t *tally, w *window) (*edgeClient, error) {
	d, closeTransport, err := newDialer(protocol, edge)
	if err != nil {
		return nil, err
	}
	// The stream outlives ctx, which only bounds the handshake.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	fail := func(err error) (*edgeClient, error) {
		cancel()
		closeTransport()
		return nil, err
	}
	stream, err := d.Dial(sctx)
	if err != nil {
		return fail(fmt.Errorf("dial %s: %w", edge, err))
	}
	stopWait := context.AfterFunc(ctx, cancel)
	hello := &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Hello{Hello: &edgev1.Hello{
		ProtocolVersion: 1, AccessToken: token, ClientName: "waggle-bench fanout"}}}
	if err := stream.Send(hello); err != nil {
		_ = stream.Close()
		return fail(fmt.Errorf("hello to %s: %w", edge, err))
	}
	f, err := stream.Recv()
	if !stopWait() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil || f.GetWelcome() == nil {
		_ = stream.Close()
		if err == nil {
			err = fmt.Errorf("first frame is not a welcome: %v", f)
		}
		return fail(fmt.Errorf("session on %s: %w", edge, err))
	}
	c := &edgeClient{stream: stream, conv: conv, tally: t, win: w, done: make(chan struct{}),
		closeTransport: func() { cancel(); closeTransport() }, heartbeat: f.GetWelcome().GetHeartbeatInterval().AsDuration()}
	if c.heartbeat <= 0 {
		c.heartbeat = 25 * time.Second
	}
	c.ping = time.AfterFunc(c.heartbeat, c.pingDue)
	go c.read()
	return c, nil
}

func (c *edgeClient) read() {
	defer close(c.done)
	for {
		f, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if !closed {
				c.endCode.CompareAndSwap(nil, endCode(err))
			}
			return
		}
		switch k := f.GetKind().(type) {
		case *edgev1.ServerFrame_Push:
			c.onPush(k.Push)
		case *edgev1.ServerFrame_Goaway:
			c.endCode.CompareAndSwap(nil, "goaway: "+k.Goaway.GetReason())
		}
	}
}

func (c *edgeClient) onPush(p *edgev1.Push) {
	now := time.Now()
	ns := now.UnixNano()
	c.tally.mu.Lock()
	for _, ev := range p.GetEvents() {
		if ev.GetConversationId() != c.conv {
			continue
		}
		var sent int64
		var index int
		if cu := ev.GetMessage().GetContent().GetCustom(); cu.GetType() == payloadType {
			sent, index, _ = decodePayload(cu.GetData())
		}
		c.tally.add(c.win, ns, ev.GetSeq(), sent, int64(index))
	}
	c.tally.mu.Unlock()
	if p.GetPushId() == 0 {
		return
	}
	c.mu.Lock()
	ack, arm := c.ack.received(p.GetPushId(), now)
	if arm {
		c.armAck(ackDelay)
	}
	c.mu.Unlock()
	if ack > 0 {
		c.sendAck(ack)
	}
}

// armAck (with mu held) fires ackDue after d.
func (c *edgeClient) armAck(d time.Duration) {
	if c.closed {
		return
	}
	if c.ackTimer == nil {
		c.ackTimer = time.AfterFunc(d, c.ackDue)
		return
	}
	c.ackTimer.Reset(d)
}

func (c *edgeClient) ackDue() {
	c.mu.Lock()
	ack, wait := c.ack.due(time.Now())
	if wait > 0 {
		c.armAck(wait)
	}
	c.mu.Unlock()
	if ack > 0 {
		c.sendAck(ack)
	}
}

func (c *edgeClient) sendAck(id uint64) {
	c.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: id}}})
}

func (c *edgeClient) pingDue() {
	c.send(&edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Ping{Ping: &edgev1.Ping{}}})
	c.mu.Lock()
	if !c.closed {
		c.ping.Reset(c.heartbeat)
	}
	c.mu.Unlock()
}

// send writes a frame; a failure shows as the end of the stream in read.
func (c *edgeClient) send(f *edgev1.ClientFrame) {
	c.sendMu.Lock()
	_ = c.stream.Send(f)
	c.sendMu.Unlock()
}

// lost says why the stream ended by itself ("" while it is up).
func (c *edgeClient) lost() string {
	s, _ := c.endCode.Load().(string)
	return s
}

func (c *edgeClient) close() {
	c.mu.Lock()
	c.closed = true
	c.ping.Stop()
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.mu.Unlock()
	_ = c.stream.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	c.closeTransport()
}

// endCode names how a stream ended: its Connect code name, or gRPC's
// status code under the same names.
func endCode(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String()
	}
	if st, ok := status.FromError(err); ok {
		return connect.Code(st.Code()).String()
	}
	return err.Error()
}
