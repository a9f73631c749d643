package presence

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// memoryStore is the sessionStore of a single process. It keeps what the
// Redis store keeps, with the same semantics: expiry by the registry's
// clock, at millisecond precision as in Redis; expired sessions are skipped
// by reads and pruned by writes; an expiry index for sweep. Nothing expires
// by itself, so without a sweeper a dead edge's users stay until looked up.
type memoryStore struct {
	mu       sync.Mutex
	sessions map[string]map[string]memorySession // user → session id → session
	lastSeen map[string]int64                    // user → unix ms, never dropped
	expiry   map[string]int64                    // user → newest session expiry (unix ms)
}

type memorySession struct {
	session *presencev1.Session
	expiry  int64 // unix ms
}

// NewMemoryRegistry returns a registry keeping sessions in this process's
// memory, for a Waggle that runs as one process without Redis. Run its
// sweeper, which also frees what dead edges left. A nil logger discards logs.
func NewMemoryRegistry(logger *slog.Logger, cfg RegistryConfig) *Registry {
	return newRegistry(&memoryStore{
		sessions: map[string]map[string]memorySession{},
		lastSeen: map[string]int64{},
		expiry:   map[string]int64{},
	}, logger, cfg)
}

func (m *memoryStore) write(_ context.Context, sessions []*presencev1.Session, now, expiry time.Time) ([]transition, error) {
	nowMS, expMS := now.UnixMilli(), expiry.UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	groups := groupByUser(sessions)
	out := make([]transition, len(groups))
	for i, g := range groups {
		stored := m.sessions[g.userID]
		if stored == nil {
			stored = map[string]memorySession{}
			m.sessions[g.userID] = stored
		}
		nlive, ndead := dropExpired(stored, nowMS)
		t := transition{userID: g.userID, liveBefore: nlive > 0, foundExpired: ndead > 0, lastSeen: m.seen(g.userID)}
		for _, j := range g.indexes {
			s := sessions[j]
			if _, live := stored[s.GetSessionId()]; !live {
				t.restored++
			}
			stored[s.GetSessionId()] = memorySession{session: proto.CloneOf(s), expiry: expMS}
		}
		t.liveAfter = len(stored) > 0
		m.lastSeen[g.userID] = nowMS
		m.expiry[g.userID] = max(m.expiry[g.userID], expMS)
		out[i] = t
	}
	return out, nil
}

func (m *memoryStore) unregister(_ context.Context, sessions []*presencev1.Session, now time.Time) ([]transition, error) {
	nowMS := now.UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	groups := groupByUser(sessions)
	out := make([]transition, len(groups))
	for i, g := range groups {
		stored := m.sessions[g.userID]
		// An expired session its edge unregisters was held until now.
		found := false
		for _, j := range g.indexes {
			_, ok := stored[sessions[j].GetSessionId()]
			found = found || ok
		}
		nlive, ndead := dropExpired(stored, nowMS)
		for _, j := range g.indexes {
			delete(stored, sessions[j].GetSessionId())
		}
		if found {
			m.lastSeen[g.userID] = nowMS
		}
		if len(stored) == 0 {
			delete(m.sessions, g.userID)
		}
		out[i] = transition{userID: g.userID, liveBefore: nlive > 0, liveAfter: len(stored) > 0, foundExpired: ndead > 0, lastSeen: m.seen(g.userID)}
	}
	return out, nil
}

func (m *memoryStore) load(_ context.Context, userIDs []string, withLastSeen bool, now time.Time) ([]UserState, []string, error) {
	nowMS := now.UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]UserState, len(userIDs))
	var expired []string
	for i, id := range userIDs {
		st := UserState{UserID: id}
		found := false
		for _, s := range m.sessions[id] {
			if s.expiry > nowMS {
				// A copy: callers own what they are given.
				st.Sessions = append(st.Sessions, proto.CloneOf(s.session))
			} else {
				found = true
			}
		}
		sortSessions(st.Sessions)
		if found {
			expired = append(expired, id)
		}
		if withLastSeen {
			st.LastSeen = m.seen(id)
		}
		out[i] = st
	}
	return out, expired, nil
}

func (m *memoryStore) prune(_ context.Context, userIDs []string, now time.Time) ([]transition, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]transition, len(userIDs))
	for i, id := range userIDs {
		out[i] = m.pruneUser(id, now.UnixMilli())
	}
	return out, nil
}

func (m *memoryStore) sweep(_ context.Context, now time.Time, limit int) (int, []transition, error) {
	nowMS := now.UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []transition
	checked := 0
	// As Redis's index, it holds users until their newest expiry passed,
	// whether or not they unregistered meanwhile.
	for id, exp := range m.expiry {
		if checked == limit {
			break
		}
		if exp > nowMS {
			continue
		}
		checked++
		delete(m.expiry, id)
		out = append(out, m.pruneUser(id, nowMS))
	}
	return checked, out, nil
}

// pruneUser removes the expired sessions of one user; m.mu is held.
func (m *memoryStore) pruneUser(userID string, nowMS int64) transition {
	stored := m.sessions[userID]
	nlive, ndead := dropExpired(stored, nowMS)
	if nlive == 0 {
		delete(m.sessions, userID)
	}
	return transition{userID: userID, liveBefore: nlive > 0, liveAfter: nlive > 0, foundExpired: ndead > 0, lastSeen: m.seen(userID)}
}

// seen is a user's last seen time, zero if never seen; m.mu is held.
func (m *memoryStore) seen(userID string) time.Time {
	ms, ok := m.lastSeen[userID]
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// dropExpired deletes the sessions expired by nowMS and counts those left and
// those deleted.
func dropExpired(stored map[string]memorySession, nowMS int64) (live, dead int) {
	before := len(stored)
	maps.DeleteFunc(stored, func(_ string, s memorySession) bool { return s.expiry <= nowMS })
	return len(stored), before - len(stored)
}
