package client

import (
	"context"
	"maps"
	"sync"
)

// State is what a client must remember between runs to sync exactly what it
// lacks: the sync cursor, per conversation the highest seq applied, and the
// highest of the user's own events applied.
type State struct {
	Cursor  string
	Seqs    map[string]uint64
	UserSeq uint64
}

// Store persists State. Apps keep it next to their message database so the
// two move together.
type Store interface {
	Load(ctx context.Context) (State, error)
	Save(ctx context.Context, s State) error
}

// MemoryStore keeps State in memory: a fresh device after every restart.
type MemoryStore struct {
	mu    sync.Mutex
	state State
}

func (m *MemoryStore) Load(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return State{Cursor: m.state.Cursor, Seqs: maps.Clone(m.state.Seqs), UserSeq: m.state.UserSeq}, nil
}

func (m *MemoryStore) Save(_ context.Context, s State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = State{Cursor: s.Cursor, Seqs: maps.Clone(s.Seqs), UserSeq: s.UserSeq}
	return nil
}
