package bus

import (
	"slices"
	"sync"
	"sync/atomic"
)

// hub maps channels to their local handlers. Both implementations use it;
// a topic is the local state of one channel. Keys are the channels'
// upstream names (prefixed, for Redis); handlers get the caller's name.
type hub struct {
	mu     sync.RWMutex
	topics map[string]*topic
}

type topic struct {
	name string // as given to Subscribe
	// subs is copy-on-write, so delivery reads it without copying.
	subs []*subscription
	// ready is closed once the channel is subscribed upstream (Redis has
	// confirmed it); Subscribe waits for it.
	ready     chan struct{}
	confirmed bool
}

type subscription struct {
	key    string
	handle Handler
	topic  *topic
	closed atomic.Bool
	close  func(*subscription) error
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

// add registers handle on the channel key (named name for the handler) and
// reports whether it created the topic (the first local subscriber, which
// must subscribe upstream).
func (h *hub) add(key, name string, handle Handler, closeFn func(*subscription) error) (*subscription, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.topics[key]
	if !ok {
		t = &topic{name: name, ready: make(chan struct{})}
		h.topics[key] = t
	}
	s := &subscription{key: key, handle: handle, topic: t, close: closeFn}
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
	if len(t.subs) > 0 || h.topics[s.key] != t {
		return false
	}
	delete(h.topics, s.key)
	return true
}

// has reports whether key has a local subscriber.
func (h *hub) has(key string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, ok := h.topics[key]
	return ok
}

// confirm marks key as subscribed upstream, releasing waiting Subscribes.
func (h *hub) confirm(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.topics[key]; ok && !t.confirmed {
		t.confirmed = true
		close(t.ready)
	}
}

// names lists the channels with a local subscriber, by the callers' names.
func (h *hub) names() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]string, 0, len(h.topics))
	for _, t := range h.topics {
		out = append(out, t.name)
	}
	return out
}

// dispatch calls the handlers of key, in subscription order.
func (h *hub) dispatch(key string, payload []byte) {
	h.mu.RLock()
	var subs []*subscription
	var name string
	if t, ok := h.topics[key]; ok {
		subs, name = t.subs, t.name
	}
	h.mu.RUnlock()
	for _, s := range subs {
		if !s.closed.Load() {
			s.handle(name, payload)
		}
	}
}
