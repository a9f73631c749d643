package bus

import (
	"context"
	"sync"
)

// memoryQueueSize bounds the messages waiting for the delivery goroutine;
// past it, Publish waits (or fails with its context).
const memoryQueueSize = 4096

// Memory is an in-process [Bus]. Like [Redis], it delivers on one goroutine,
// in publish order, so code behaves the same on both.
type Memory struct {
	hub       hub
	queue     chan Message
	done      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

var _ Bus = (*Memory)(nil)

// NewMemory starts an in-process bus. Close it to stop its goroutine.
func NewMemory() *Memory {
	m := &Memory{
		hub:     newHub(),
		queue:   make(chan Message, memoryQueueSize),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go m.run()
	return m
}

func (m *Memory) run() {
	defer close(m.stopped)
	for {
		select {
		case msg := <-m.queue:
			m.hub.dispatch(msg.Channel, msg.Payload)
		case <-m.done:
			return
		}
	}
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
	case m.queue <- msg:
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
func (m *Memory) Subscribe(_ context.Context, channel string, handle func([]byte)) (Subscription, error) {
	select {
	case <-m.done:
		return nil, ErrClosed
	default:
	}
	s, _ := m.hub.add(channel, handle, func(s *subscription) error {
		m.hub.remove(s)
		return nil
	})
	return s, nil
}

// Close stops delivery; queued messages are dropped.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		<-m.stopped
	})
	return nil
}
