package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig tunes [NewRedis]. The zero value is usable.
type RedisConfig struct {
	// OnResubscribe is called after the pub/sub connection was lost and is
	// back with every channel subscribed again. Messages published while it
	// was down are lost, so subscribers must repair (ask for a sync). It runs
	// on the delivery goroutine before any message of the new connection:
	// it must not block. Zero: nothing is called (the event is still logged
	// at warn).
	OnResubscribe func()
	// PingInterval is how long the connection may stay silent before the
	// bus pings Redis to check it. Zero means 5 s.
	PingInterval time.Duration
}

const (
	defaultPingInterval = 5 * time.Second
	minRetryDelay       = 50 * time.Millisecond
	maxRetryDelay       = 2 * time.Second
)

// Redis is a [Bus] over Redis pub/sub. All subscriptions of one Redis bus
// share one pub/sub connection, read by one goroutine that calls the
// handlers. go-redis reconnects and resubscribes after a connection loss;
// the bus reports it through [RedisConfig.OnResubscribe].
type Redis struct {
	client *redis.Client
	prefix string
	log    *slog.Logger
	cfg    RedisConfig

	ps  *redis.PubSub
	hub hub
	// subMu orders upstream SUBSCRIBE/UNSUBSCRIBE with topic creation and
	// deletion, so a channel left and re-joined concurrently ends subscribed.
	subMu sync.Mutex
	// lost is set when the connection failed and cleared, with a warning and
	// OnResubscribe, once a reply arrives on a new one.
	lost atomic.Bool

	ctx       context.Context
	cancel    context.CancelFunc
	stopped   chan struct{}
	closeOnce sync.Once
}

var _ Bus = (*Redis)(nil)

// NewRedis starts a bus on client. Every channel name gets prefix in front.
// A nil logger discards logs. Close the bus before the client; the client
// stays the caller's.
func NewRedis(client *redis.Client, prefix string, logger *slog.Logger, cfg RedisConfig) *Redis {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = defaultPingInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Redis{
		client:  client,
		prefix:  prefix,
		log:     logger,
		cfg:     cfg,
		ps:      client.Subscribe(ctx),
		hub:     newHub(),
		ctx:     ctx,
		cancel:  cancel,
		stopped: make(chan struct{}),
	}
	go b.run()
	return b
}

// Publish implements [Publisher].
func (b *Redis) Publish(ctx context.Context, channel string, payload []byte) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	if err := b.client.Publish(ctx, b.prefix+channel, payload).Err(); err != nil {
		return fmt.Errorf("bus: publish on %q: %w", channel, err)
	}
	return nil
}

// PublishBatch implements [Publisher] with one pipelined round trip.
func (b *Redis) PublishBatch(ctx context.Context, msgs []Message) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range msgs {
			p.Publish(ctx, b.prefix+m.Channel, m.Payload)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bus: publish batch of %d: %w", len(msgs), err)
	}
	return nil
}

// Subscribe implements [Subscriber]. It returns once Redis has confirmed
// the subscription, so a message published after it returns is delivered.
func (b *Redis) Subscribe(ctx context.Context, channel string, handle func([]byte)) (Subscription, error) {
	if b.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bus: subscribe to %q: %w", channel, context.Cause(ctx))
	}
	name := b.prefix + channel
	b.subMu.Lock()
	s, created := b.hub.add(name, handle, b.unsubscribe)
	if created {
		if err := b.ps.Subscribe(ctx, name); err != nil {
			b.connLost(err)
			b.subMu.Unlock()
			_ = s.Close()
			return nil, fmt.Errorf("bus: subscribe to %q: %w", channel, err)
		}
	}
	b.subMu.Unlock()

	select {
	case <-s.topic.ready:
		return s, nil
	case <-ctx.Done():
		_ = s.Close()
		return nil, fmt.Errorf("bus: subscribe to %q: %w", channel, context.Cause(ctx))
	case <-b.stopped:
		return nil, ErrClosed
	}
}

func (b *Redis) unsubscribe(s *subscription) error {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	if !b.hub.remove(s) || b.ctx.Err() != nil {
		return nil
	}
	// go-redis forgets the channel even if this fails, so it is not
	// resubscribed on reconnect; the error only reports the lost write.
	if err := b.ps.Unsubscribe(b.ctx, s.channel); err != nil {
		b.connLost(err)
		return fmt.Errorf("bus: unsubscribe from %q: %w", s.channel[len(b.prefix):], err)
	}
	return nil
}

// Close stops delivery and closes the pub/sub connection.
func (b *Redis) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.cancel()
		err = b.ps.Close()
		<-b.stopped
	})
	if err != nil {
		return fmt.Errorf("bus: close: %w", err)
	}
	return nil
}

// run is the single reader: it receives from the pub/sub connection and
// dispatches to handlers. A receive error makes go-redis drop the connection;
// the next receive dials again and resubscribes every channel.
func (b *Redis) run() {
	defer close(b.stopped)
	delay := minRetryDelay
	for {
		msg, err := b.ps.ReceiveTimeout(b.ctx, b.cfg.PingInterval)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			if isTimeout(err) {
				// Silent for a while: a ping either gets a pong or, if the
				// write fails, makes go-redis reconnect.
				if err := b.ps.Ping(b.ctx); err != nil {
					b.connLost(err)
				}
				continue
			}
			b.connLost(err)
			select {
			case <-time.After(delay):
			case <-b.ctx.Done():
				return
			}
			delay = min(2*delay, maxRetryDelay)
			continue
		}
		delay = minRetryDelay
		if b.lost.CompareAndSwap(true, false) {
			b.log.Warn("bus: redis pub/sub connection restored and channels resubscribed; messages published meanwhile are lost")
			if b.cfg.OnResubscribe != nil {
				b.cfg.OnResubscribe()
			}
		}
		switch m := msg.(type) {
		case *redis.Message:
			b.hub.dispatch(m.Channel, []byte(m.Payload))
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.hub.confirm(m.Channel)
			}
		}
	}
}

func (b *Redis) connLost(err error) {
	if b.lost.CompareAndSwap(false, true) {
		b.log.Warn("bus: redis pub/sub connection lost; reconnecting", "err", err)
		return
	}
	b.log.Debug("bus: redis pub/sub still down", "err", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
