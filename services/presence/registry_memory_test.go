package presence

import (
	"testing"
	"time"

	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// The conformance suite sees only answers; this checks that the memory
// store also lets go of what expired, as Redis's key expiry does.
func TestMemoryStoreFreesExpiredSessions(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	reg := NewMemoryRegistry(nil, RegistryConfig{Now: func() time.Time { return now }})
	store := reg.store.(*memoryStore)
	var sessions []*presencev1.Session
	for _, u := range []string{"u1", "u2", "u3"} {
		sessions = append(sessions, &presencev1.Session{SessionId: "s-" + u, UserId: u, DeviceId: "d", EdgeId: "dead-edge"})
	}
	if _, err := reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: sessions}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(DefaultSessionTTL)
	if n, err := reg.Sweep(t.Context()); err != nil || n != 3 {
		t.Fatalf("Sweep checked %d users (%v), want 3", n, err)
	}
	if len(store.sessions) != 0 || len(store.expiry) != 0 {
		t.Fatalf("after the sweep: %d users' sessions and %d index entries kept", len(store.sessions), len(store.expiry))
	}
	if len(store.lastSeen) != 3 {
		t.Fatalf("last seen kept for %d users, want 3", len(store.lastSeen))
	}
}
