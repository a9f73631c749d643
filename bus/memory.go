package bus

import (
	"context"
	"hash/maphash"
	"sync"
)

const (
	// memoryShards is how many goroutines deliver, each for its share of
	// the channels, so one busy channel does not hold up the others.
	memoryShards = 8
	// memoryQueueSize bounds the messages waiting for a shard; past it,
	// Publish waits (or fails with its context).
	memoryQueueSize = 4096
)

// Memory is an in-process [Bus]. Like [Redis], it delivers each channel's
// messages on one goroutine, in publish order, and different channels on
// different goroutines, so code behaves the same on both.
type Memory struct {
	seed      maphash.Seed
	shards    [memoryShards]memoryShard
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type memoryShard struct {
	hub   hub
	queue chan Message
}

var _ Bus = (*Memory)(nil)

// NewMemory starts an in-process bus. Close it to stop its goroutines.
func NewMemory() *Memory {
	m := &Memory{seed: maphash.MakeSeed(), done: make(chan struct{})}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.hub = newHub()
		sh.queue = make(chan Message, memoryQueueSize)
		m.wg.Go(func() {
			for {
				select {
				case msg := <-sh.queue:
					sh.hub.dispatch(msg.Channel, msg.Payload)
				case <-m.done:
					return
				}
			}
		})
	}
	return m
}

func (m *Memory) shard(channel string) *memoryShard {
	return &m.shards[maphash.String(m.seed, channel)%memoryShards]
}

// Publish implements [Publisher].
func (m *Memory) Publish(ctx context.Context, channel string, payload []byte) error {
	// Copy: the caller may reuse its buffer, as it may with Redis.
	msg := Message{Channel: channel, Payload: append([]byte(nil), payload...)}
	select {
	case <-m.done:
		return ErrClosed
	default:
	}
	select {
	case m.shard(channel).queue <- msg:
		return nil
	case <-m.done:
		return ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// PublishBatch implements [Publisher].
func (m *Memory) PublishBatch(ctx context.Context, msgs []Message) error {
	for _, msg := range msgs {
		if err := m.Publish(ctx, msg.Channel, msg.Payload); err != nil {
			return err
		}
	}
	return nil
}

// Subscribe implements [Subscriber].
func (m *Memory) Subscribe(_ context.Context, handle Handler, channels ...string) ([]Subscription, error) {
	select {
	case <-m.done:
		return nil, ErrClosed
	default:
	}
	subs := make([]Subscription, len(channels))
	for i, ch := range channels {
		sh := m.shard(ch)
		subs[i], _ = sh.hub.add(ch, ch, handle, func(s *subscription) error {
			sh.hub.remove(s)
			return nil
		})
	}
	return subs, nil
}

// Close stops delivery; queued messages are dropped.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		m.wg.Wait()
	})
	return nil
}
