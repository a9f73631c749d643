package blockmirror

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/services/contact"
)

// Memory is the mirror in this process's memory, safe for concurrent use.
// It starts empty: fill it with the contact service's ResyncBlockers.
type Memory struct {
	mu sync.RWMutex
	// Both directions, as presence asks both ways.
	blockers map[string]map[string]struct{} // blocked → blockers
	blocked  map[string]map[string]struct{} // blocker → blocked
}

// NewMemory returns an empty mirror.
func NewMemory() *Memory {
	return &Memory{blockers: map[string]map[string]struct{}{}, blocked: map[string]map[string]struct{}{}}
}

func (m *Memory) AddBlocks(_ context.Context, blocks []contact.Block) error {
	m.each(blocks, add)
	return nil
}

func (m *Memory) RemoveBlocks(_ context.Context, blocks []contact.Block) error {
	m.each(blocks, remove)
	return nil
}

// each applies op to both directions of every block.
func (m *Memory) each(blocks []contact.Block, op func(sets map[string]map[string]struct{}, key, member string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blocks {
		blocker, blocked := b.Blocker.String(), b.Blocked.String()
		op(m.blockers, blocked, blocker)
		op(m.blocked, blocker, blocked)
	}
}

func add(sets map[string]map[string]struct{}, key, member string) {
	set, ok := sets[key]
	if !ok {
		set = map[string]struct{}{}
		sets[key] = set
	}
	set[member] = struct{}{}
}

// remove drops member, and the set once empty, so that users who unblocked
// everyone cost nothing.
func remove(sets map[string]map[string]struct{}, key, member string) {
	set := sets[key]
	delete(set, member)
	if len(set) == 0 {
		delete(sets, key)
	}
}

// ScanBlocks copies the blocks out, then hands them to fn without the lock
// held, so fn may change the mirror.
func (m *Memory) ScanBlocks(ctx context.Context, fn func([]contact.Block) error) error {
	m.mu.RLock()
	var all []contact.Block
	for blocker, set := range m.blocked {
		for blocked := range set {
			// Only AddBlocks writes, from ids: they parse.
			all = append(all, contact.Block{Blocker: uuid.MustParse(blocker), Blocked: uuid.MustParse(blocked)})
		}
	}
	m.mu.RUnlock()
	for len(all) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(all), scanPage)
		if err := fn(all[:n]); err != nil {
			return err
		}
		all = all[n:]
	}
	return nil
}

func (m *Memory) BlockersAmong(_ context.Context, viewer string, users []string) ([]bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	set := m.blockers[viewer]
	found := make([]bool, len(users))
	for i, u := range users {
		_, found[i] = set[u]
	}
	return found, nil
}

func (m *Memory) BlockedBy(_ context.Context, user string) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	set := m.blocked[user]
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	return out, nil
}
