package bus

import (
	"slices"
	"sync"
	"sync/atomic"
)

// hub maps channels to their local handlers. Both implementations use it;
// a topic is the local state of one channel.
type hub struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

type topic struct {
	// subs is copy-on-write, so delivery reads it without copying.
	subs []*subscription
	// ready is closed once the channel is subscribed upstream (Redis has
	// confirmed it); Subscribe waits for it.
	ready     chan struct{}
	confirmed bool
}

type subscription struct {
	channel string
	handle  func([]byte)
	topic   *topic
	closed  atomic.Bool
	close   func(*subscription) error
}

func (s *subscription) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	return s.close(s)
}

func newHub() hub {
	return hub{topics: make(map[string]*topic)}
}

// add registers handle on channel and reports whether it created the topic
// (the first local subscriber, which must subscribe upstream).
func (h *hub) add(channel string, handle func([]byte), closeFn func(*subscription) error) (*subscription, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.topics[channel]
	if !ok {
		t = &topic{ready: make(chan struct{})}
		h.topics[channel] = t
	}
	s := &subscription{channel: channel, handle: handle, topic: t, close: closeFn}
	t.subs = append(slices.Clip(t.subs), s)
	return s, !ok
}

// remove unregisters s and reports whether its topic is now gone (the last
// local subscriber left, so the channel must be unsubscribed upstream).
func (h *hub) remove(s *subscription) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := s.topic
	i := slices.Index(t.subs, s)
	if i < 0 {
		return false
	}
	t.subs = slices.Delete(slices.Clone(t.subs), i, i+1)
	if len(t.subs) > 0 || h.topics[s.channel] != t {
		return false
	}
	delete(h.topics, s.channel)
	return true
}

// confirm marks channel as subscribed upstream, releasing waiting Subscribes.
func (h *hub) confirm(channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.topics[channel]; ok && !t.confirmed {
		t.confirmed = true
		close(t.ready)
	}
}

// dispatch calls the handlers of channel, in subscription order.
func (h *hub) dispatch(channel string, payload []byte) {
	h.mu.RLock()
	var subs []*subscription
	if t, ok := h.topics[channel]; ok {
		subs = t.subs
	}
	h.mu.RUnlock()
	for _, s := range subs {
		if !s.closed.Load() {
			s.handle(payload)
		}
	}
}
