// Package bus carries messages between services and edges: services publish
// on topic channels (a group's, a user's; see channels.go), and each edge
// subscribes to the channels its sessions need.
//
// Two implementations share the semantics documented on [Bus]: [Redis]
// (Redis pub/sub, for several processes) and [Memory] (in-process, for a
// single `waggle serve` process and for tests).
//
// Delivery is at most once. A message published while a subscriber is
// disconnected is lost; [RedisConfig.OnResubscribe] names the channels that
// were interrupted so the subscriber can repair them. Messages on one
// channel from one publisher arrive in publish order.
package bus

import (
	"context"
	"errors"
	"io"
	"time"
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
	// PublishBatch publishes many messages in one round trip. Messages on
	// the same channel keep their order.
	PublishBatch(ctx context.Context, msgs []Message) error
}

// Handler receives one message of a subscribed channel: the channel's name
// as given to Subscribe, and the payload. The payload is shared by all
// subscribers of the channel and must not be modified; it may be retained.
type Handler func(channel string, payload []byte)

// Subscriber receives messages. Edges need only this.
type Subscriber interface {
	// Subscribe calls handle for every message published on any of
	// channels from when Subscribe returns until that channel's
	// Subscription is closed. It subscribes them all in one command per
	// connection and returns one Subscription per channel, in order; on an
	// error none is left subscribed.
	//
	// Handlers of one channel run one at a time, in arrival order;
	// handlers of different channels may run at the same time. They must
	// be fast and must not block (enqueue the work and return).
	Subscribe(ctx context.Context, handle Handler, channels ...string) ([]Subscription, error)
}

// Bus is both sides plus Close, which stops delivery and releases the bus's
// connections and goroutines. Close must not be called from a handler.
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

// Resubscribed reports channels whose subscription was interrupted and is
// back: messages published on them meanwhile are lost.
type Resubscribed struct {
	// Channels are the names as given to Subscribe.
	Channels []string
	// Since is the last time the connection was known to work: what was
	// published on Channels after it may be lost.
	Since time.Time
}
