// Package bus carries messages between services and edges: the chat service
// publishes envelopes on an edge's channel, the edge subscribes to it.
//
// Two implementations share the semantics documented on [Bus]: [Redis]
// (Redis pub/sub, for several processes) and [Memory] (in-process, for a
// single `waggle serve` process and for tests).
//
// Delivery is at most once. A message published while a subscriber is
// disconnected is lost; [RedisConfig.OnResubscribe] tells the subscriber to
// repair through sync. Messages on one channel from one publisher arrive in
// publish order.
package bus

import (
	"context"
	"errors"
	"io"
)

// ErrClosed is returned by calls on a closed bus.
var ErrClosed = errors.New("bus: closed")

// Message is one payload for one channel, for [Publisher.PublishBatch].
type Message struct {
	Channel string
	Payload []byte
}

// Publisher sends messages. The chat service needs only this.
type Publisher interface {
	// Publish sends payload to every current subscriber of channel.
	Publish(ctx context.Context, channel string, payload []byte) error
	// PublishBatch publishes many messages in one round trip (the chat
	// service sends one envelope per edge node). Messages on the same
	// channel keep their order.
	PublishBatch(ctx context.Context, msgs []Message) error
}

// Subscriber receives messages. Edges need only this.
type Subscriber interface {
	// Subscribe calls handle with the payload of every message published on
	// channel from when Subscribe returns until the Subscription is closed.
	//
	// Handlers run one at a time on the bus's single delivery goroutine, in
	// arrival order: they must be fast and must not block (enqueue the work
	// and return). The payload is shared by all subscribers of the channel
	// and must not be modified; it may be retained.
	Subscribe(ctx context.Context, channel string, handle func(payload []byte)) (Subscription, error)
}

// Bus is both sides plus Close, which stops delivery and releases the bus's
// connection and goroutine. Close must not be called from a handler.
type Bus interface {
	Publisher
	Subscriber
	io.Closer
}

// Subscription is one handler's interest in one channel.
type Subscription interface {
	// Close unsubscribes. It is idempotent and safe to call from the handler.
	// A delivery already in progress may still complete.
	Close() error
}
