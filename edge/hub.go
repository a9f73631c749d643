package edge

import (
	"hash/maphash"
	"slices"
	"sync"
)

// hubShards spreads the session maps over independently locked shards (as
// centrifuge's hub does), so bus fan-out, connects and disconnects on
// different users rarely wait for each other.
const hubShards = 64

// hub is this edge's session map: session id → session, and user id →
// that user's sessions here. It knows nothing of other edges.
type hub struct {
	seed   maphash.Seed
	shards [hubShards]hubShard
}

type hubShard struct {
	mu     sync.RWMutex
	byID   map[string]*session
	byUser map[string][]*session
}

func newHub() *hub {
	h := &hub{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].byID = make(map[string]*session)
		h.shards[i].byUser = make(map[string][]*session)
	}
	return h
}

func (h *hub) shard(key string) *hubShard {
	return &h.shards[maphash.String(h.seed, key)%hubShards]
}

func (h *hub) add(s *session) {
	byID := h.shard(s.id)
	byID.mu.Lock()
	byID.byID[s.id] = s
	byID.mu.Unlock()

	byUser := h.shard(s.ident.UserID)
	byUser.mu.Lock()
	byUser.byUser[s.ident.UserID] = append(byUser.byUser[s.ident.UserID], s)
	byUser.mu.Unlock()
}

func (h *hub) remove(s *session) {
	byID := h.shard(s.id)
	byID.mu.Lock()
	delete(byID.byID, s.id)
	byID.mu.Unlock()

	byUser := h.shard(s.ident.UserID)
	byUser.mu.Lock()
	defer byUser.mu.Unlock()
	list := byUser.byUser[s.ident.UserID]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(byUser.byUser, s.ident.UserID)
	} else {
		byUser.byUser[s.ident.UserID] = list
	}
}

func (h *hub) get(id string) *session {
	sh := h.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.byID[id]
}

// forUser calls fn for each of the user's sessions on this edge. fn runs
// under the shard's read lock: it must not block or call back into the hub.
func (h *hub) forUser(userID string, fn func(*session)) {
	sh := h.shard(userID)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for _, s := range sh.byUser[userID] {
		fn(s)
	}
}

// all returns every session, shard by shard (not one atomic snapshot).
func (h *hub) all() []*session {
	var out []*session
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, s := range sh.byID {
			out = append(out, s)
		}
		sh.mu.RUnlock()
	}
	return out
}
