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

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// edgeClient is a minimal EdgeService.Connect session, far cheaper than an
// SDK client: it sends Hello, tallies the events of each push, acks by the
// ack policy (see acker) and pings every heartbeat_interval. It answers
// nothing else, keeps no state beyond the tally and never reconnects. It
// reads frames with the lean parser (leanFrame), without decoding them.
type edgeClient struct {
	stream         leanStream
	frame          leanFrame // the reader's; its conv is the conversation whose events count
	closeTransport func()
	tally          *tally
	win            *window
	done           chan struct{} // the reader has returned
	endCode        atomic.Value  // string: why the stream ended by itself, the first reason

	sendMu sync.Mutex // Send is not safe for concurrent use

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
	// The stream outlives ctx, which only bounds the handshake.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stream, closeTransport, err := dialLean(sctx, protocol, edge)
	if err != nil {
		cancel()
		return nil, err
	}
	fail := func(err error) (*edgeClient, error) {
		cancel()
		closeTransport()
		return nil, err
	}
	c := &edgeClient{stream: stream, frame: leanFrame{conv: []byte(conv)}, tally: t, win: w, done: make(chan struct{}),
		closeTransport: func() { cancel(); closeTransport() }}
	stopWait := context.AfterFunc(ctx, cancel)
	hello := &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_Hello{Hello: &edgev1.Hello{
		ProtocolVersion: 1, AccessToken: token, ClientName: "waggle-bench fanout"}}}
	if err := stream.Send(hello); err != nil {
		_ = stream.Close()
		return fail(fmt.Errorf("hello to %s: %w", edge, err))
	}
	err = c.recv()
	if !stopWait() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil || c.frame.kind != frameWelcome {
		_ = stream.Close()
		if err == nil {
			err = fmt.Errorf("first frame is not a welcome but a %s", c.frame.kind)
		}
		return fail(fmt.Errorf("session on %s: %w", edge, err))
	}
	c.heartbeat = c.frame.heartbeat
	if c.heartbeat <= 0 {
		c.heartbeat = 25 * time.Second
	}
	c.ping = time.AfterFunc(c.heartbeat, c.pingDue)
	go c.read()
	return c, nil
}

// recv reads the next frame into c.frame.
func (c *edgeClient) recv() error {
	c.frame.reset() // connect-go skips the codec for an empty message
	if err := c.stream.Recv(&c.frame); err != nil {
		return err
	}
	if !c.frame.hasFrame {
		return errors.New("edge sent an empty response")
	}
	return nil
}

func (c *edgeClient) read() {
	defer close(c.done)
	for {
		if err := c.recv(); err != nil {
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if !closed {
				c.endCode.CompareAndSwap(nil, endCode(err))
			}
			return
		}
		switch c.frame.kind {
		case framePush:
			c.onPush(&c.frame)
		case frameGoaway:
			c.endCode.CompareAndSwap(nil, "goaway: "+c.frame.reason)
		}
	}
}

func (c *edgeClient) onPush(p *leanFrame) {
	now := time.Now()
	ns := now.UnixNano()
	c.tally.mu.Lock()
	for _, ev := range p.events {
		c.tally.add(c.win, ns, ev.seq, ev.sent, ev.index)
	}
	c.tally.mu.Unlock()
	if p.pushID == 0 {
		return
	}
	c.mu.Lock()
	ack, arm := c.ack.received(p.pushID, now)
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
