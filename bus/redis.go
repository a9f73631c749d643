package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig tunes [NewRedis]. The zero value is usable.
type RedisConfig struct {
	// OnResubscribe is called after a pub/sub connection was lost and is
	// back with its channels subscribed again, naming them: messages
	// published on them meanwhile are lost, so subscribers must repair. It
	// runs on that connection's delivery goroutine before any message of
	// the new connection: it must not block. Zero: nothing is called (the
	// event is still logged at warn).
	OnResubscribe func(Resubscribed)
	// PingInterval is how long a connection may stay silent before the
	// bus pings Redis to check it. Zero means 5 s.
	PingInterval time.Duration
	// Connections is how many pub/sub connections share the subscribed
	// channels (each channel on one, by hash), each read by a goroutine of
	// its own, so one busy channel does not hold up the others. Zero
	// means 4.
	Connections int
}

const (
	defaultPingInterval = 5 * time.Second
	defaultConnections  = 4
	minRetryDelay       = 50 * time.Millisecond
	maxRetryDelay       = 2 * time.Second
)

// Redis is a [Bus] over Redis pub/sub. Subscriptions are spread over a few
// pub/sub connections; go-redis reconnects each and resubscribes its
// channels after a loss, and the bus reports it through
// [RedisConfig.OnResubscribe].
type Redis struct {
	client *redis.Client
	prefix string
	log    *slog.Logger
	cfg    RedisConfig
	seed   maphash.Seed
	conns  []*redisConn

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// redisConn is one pub/sub connection and the channels hashed to it.
type redisConn struct {
	b   *Redis
	ps  *redis.PubSub
	hub hub

	// mu orders SUBSCRIBE and UNSUBSCRIBE commands with topic creation and
	// deletion, so a channel left and re-joined concurrently ends
	// subscribed, and guards ops and unsub.
	mu sync.Mutex
	// ops counts, per channel, the replies still due to commands sent.
	// Redis answers in order, so a topic is subscribed upstream once a
	// subscribe reply leaves none due: an earlier reply (say to a
	// SUBSCRIBE followed by an UNSUBSCRIBE) must not confirm it.
	ops map[string]int
	// unsub holds channels whose last local subscriber left, for the
	// flusher to unsubscribe in one command.
	unsub map[string]struct{}
	kick  chan struct{}

	// lost is set when the connection failed and cleared, with a warning
	// and OnResubscribe, once a reply arrives on a new one.
	lost atomic.Bool
	// alive is when a reply last arrived (unix ns); since is alive as it
	// was when the connection was lost.
	alive, since atomic.Int64
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
	if cfg.Connections <= 0 {
		cfg.Connections = defaultConnections
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Redis{client: client, prefix: prefix, log: logger, cfg: cfg, seed: maphash.MakeSeed(), ctx: ctx, cancel: cancel}
	for range cfg.Connections {
		c := &redisConn{
			b:     b,
			ps:    client.Subscribe(ctx),
			hub:   newHub(),
			ops:   make(map[string]int),
			unsub: make(map[string]struct{}),
			kick:  make(chan struct{}, 1),
		}
		c.alive.Store(time.Now().UnixNano())
		b.conns = append(b.conns, c)
		b.wg.Go(c.run)
		b.wg.Go(c.flushUnsubscribes)
	}
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

func (b *Redis) conn(key string) *redisConn {
	return b.conns[maphash.String(b.seed, key)%uint64(len(b.conns))]
}

// Subscribe implements [Subscriber]. It returns once Redis has confirmed
// every channel, so a message published after it returns is delivered.
func (b *Redis) Subscribe(ctx context.Context, handle Handler, channels ...string) ([]Subscription, error) {
	if b.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bus: subscribe to %d channels: %w", len(channels), context.Cause(ctx))
	}
	subs := make([]*subscription, len(channels))
	fail := func(err error) ([]Subscription, error) {
		for _, s := range subs {
			if s != nil {
				_ = s.Close()
			}
		}
		return nil, err
	}
	byConn := make(map[*redisConn][]int)
	for i, ch := range channels {
		c := b.conn(b.prefix + ch)
		byConn[c] = append(byConn[c], i)
	}
	for c, idx := range byConn {
		if err := c.subscribe(ctx, handle, channels, idx, subs); err != nil {
			return fail(fmt.Errorf("bus: subscribe to %d channels: %w", len(channels), err))
		}
	}
	for _, s := range subs {
		select {
		case <-s.topic.ready:
		case <-ctx.Done():
			return fail(fmt.Errorf("bus: subscribe to %q: %w", channels[0], context.Cause(ctx)))
		case <-b.ctx.Done():
			return fail(ErrClosed)
		}
	}
	out := make([]Subscription, len(subs))
	for i, s := range subs {
		out[i] = s
	}
	return out, nil
}

// subscribe adds channels[idx] to c's hub, filling subs, and sends one
// SUBSCRIBE for those that had no local subscriber.
func (c *redisConn) subscribe(ctx context.Context, handle Handler, channels []string, idx []int, subs []*subscription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var fresh []string
	for _, i := range idx {
		key := c.b.prefix + channels[i]
		s, created := c.hub.add(key, channels[i], handle, c.unsubscribe)
		subs[i] = s
		if created {
			fresh = append(fresh, key)
			delete(c.unsub, key)
			c.ops[key]++
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := c.ps.Subscribe(ctx, fresh...); err != nil {
		c.connLost(err)
		return err
	}
	return nil
}

// unsubscribe drops s; the flusher unsubscribes its channel upstream if
// it was the last local subscriber and none came back meanwhile.
func (c *redisConn) unsubscribe(s *subscription) error {
	c.mu.Lock()
	gone := c.hub.remove(s)
	if gone {
		c.unsub[s.key] = struct{}{}
	}
	c.mu.Unlock()
	if gone {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// flushUnsubscribes sends the pending unsubscribes in one command, so a
// thousand sessions leaving cost one UNSUBSCRIBE, not a thousand.
func (c *redisConn) flushUnsubscribes() {
	for {
		select {
		case <-c.b.ctx.Done():
			return
		case <-c.kick:
		}
		c.mu.Lock()
		var keys []string
		for key := range c.unsub {
			if !c.hub.has(key) {
				keys = append(keys, key)
				c.ops[key]++
			}
		}
		clear(c.unsub)
		// go-redis forgets the channels even if this fails, so they are
		// not resubscribed on reconnect; the error only reports the write.
		if len(keys) > 0 {
			if err := c.ps.Unsubscribe(c.b.ctx, keys...); err != nil && c.b.ctx.Err() == nil {
				c.connLost(err)
			}
		}
		c.mu.Unlock()
	}
}

// Close stops delivery and closes the pub/sub connections.
func (b *Redis) Close() error {
	var errs []error
	b.closeOnce.Do(func() {
		b.cancel()
		for _, c := range b.conns {
			if err := c.ps.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		b.wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: close: %w", err)
	}
	return nil
}

// run is the connection's single reader: it receives and dispatches to
// handlers. A receive error makes go-redis drop the connection; the next
// receive dials again and resubscribes every channel.
func (c *redisConn) run() {
	b := c.b
	delay := minRetryDelay
	for {
		msg, err := c.ps.ReceiveTimeout(b.ctx, b.cfg.PingInterval)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			if isTimeout(err) {
				// Silent for a while: a ping either gets a pong or, if the
				// write fails, makes go-redis reconnect.
				if err := c.ps.Ping(b.ctx); err != nil {
					c.connLost(err)
				}
				continue
			}
			c.connLost(err)
			select {
			case <-time.After(delay):
			case <-b.ctx.Done():
				return
			}
			delay = min(2*delay, maxRetryDelay)
			continue
		}
		delay = minRetryDelay
		c.alive.Store(time.Now().UnixNano())
		if c.lost.CompareAndSwap(true, false) {
			c.restored()
		}
		switch m := msg.(type) {
		case *redis.Message:
			c.hub.dispatch(m.Channel, []byte(m.Payload))
		case *redis.Subscription:
			c.replied(m)
		}
	}
}

// replied accounts for a subscribe or unsubscribe reply.
func (c *redisConn) replied(m *redis.Subscription) {
	c.mu.Lock()
	n := c.ops[m.Channel] - 1
	if n > 0 {
		c.ops[m.Channel] = n
	} else {
		delete(c.ops, m.Channel)
	}
	c.mu.Unlock()
	if n <= 0 && m.Kind == "subscribe" {
		c.hub.confirm(m.Channel)
	}
}

// restored runs on the first reply of a new connection, which go-redis
// opened with every channel resubscribed.
func (c *redisConn) restored() {
	// Replies to commands sent on the lost connection never come.
	c.mu.Lock()
	clear(c.ops)
	c.mu.Unlock()
	ev := Resubscribed{Channels: c.hub.names(), Since: time.Unix(0, c.since.Load())}
	c.b.log.Warn("bus: redis pub/sub connection restored and channels resubscribed; messages published meanwhile are lost",
		"channels", len(ev.Channels), "since", ev.Since)
	if c.b.cfg.OnResubscribe != nil {
		c.b.cfg.OnResubscribe(ev)
	}
}

func (c *redisConn) connLost(err error) {
	if c.lost.CompareAndSwap(false, true) {
		c.since.Store(c.alive.Load())
		c.b.log.Warn("bus: redis pub/sub connection lost; reconnecting", "err", err)
		return
	}
	c.b.log.Debug("bus: redis pub/sub still down", "err", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
