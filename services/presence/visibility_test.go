package presence_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/auth"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/services/presence"
)

// blockVisFixture is a registry and a PresenceService filtered by
// BlockVisibility, on one Redis prefix; blockers sets are written directly,
// as the contact service would.
type blockVisFixture struct {
	client *redis.Client
	prefix string
	reg    *presence.Registry
	svc    *presence.Service
	vis    *presence.BlockVisibility
}

func newBlockVisFixture(t *testing.T) *blockVisFixture {
	client, prefix := redistest.New(t)
	f := &blockVisFixture{client: client, prefix: prefix, vis: presence.NewBlockVisibility(client, prefix)}
	f.reg = presence.NewRedisRegistry(client, prefix, testLogger(t), presence.RegistryConfig{})
	f.svc = presence.NewService(f.reg, testLogger(t), presence.ServiceConfig{Visibility: f.vis})
	return f
}

// block records that blocker blocked blocked.
func (f *blockVisFixture) block(t *testing.T, blocker, blocked string) {
	t.Helper()
	if err := f.client.SAdd(t.Context(), presence.BlockersKey(f.prefix, blocked), blocker).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestBlockersKey(t *testing.T) {
	if got, want := presence.BlockersKey("waggle:", "u1"), "waggle:blockers:{u1}"; got != want {
		t.Fatalf("BlockersKey = %q, want %q", got, want)
	}
}

func TestBlockVisibilityHidden(t *testing.T) {
	f := newBlockVisFixture(t)
	// a and c blocked v; v blocked e.
	f.block(t, "a", "v")
	f.block(t, "c", "v")
	f.block(t, "v", "e")
	for _, tc := range []struct {
		name   string
		viewer string
		users  []string
		want   []string
	}{
		{"nobody asked", "v", nil, nil},
		{"blockers among others", "v", []string{"a", "b", "c"}, []string{"a", "c"}},
		{"no blocker asked", "v", []string{"b", "d"}, nil},
		{"repeated ids", "v", []string{"a", "a", "b"}, []string{"a"}},
		{"viewer blocked by nobody", "w", []string{"a", "b", "c"}, nil},
		{"blocking someone does not hide them", "v", []string{"e"}, nil},
		{"the blocked user sees the blocker hidden", "e", []string{"v", "a"}, []string{"v"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hidden, err := f.vis.Hidden(t.Context(), tc.viewer, tc.users)
			if err != nil {
				t.Fatalf("Hidden: %v", err)
			}
			got := slices.Sorted(maps.Keys(hidden))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Hidden(%s, %v) = %v, want %v", tc.viewer, tc.users, got, tc.want)
			}
		})
	}
}

// TestBlockVisibilityPresence checks what PresenceService shows: a blocker
// looks offline and never seen to those they blocked only.
func TestBlockVisibilityPresence(t *testing.T) {
	f := newBlockVisFixture(t)
	ctx := t.Context()
	sessions := []*presencev1.Session{
		{SessionId: "s-a", UserId: "a", DeviceId: "d", EdgeId: "edge-1"},
		{SessionId: "s-b", UserId: "b", DeviceId: "d", EdgeId: "edge-1"},
		{SessionId: "s-c", UserId: "c", DeviceId: "d", EdgeId: "edge-1"},
	}
	if _, err := f.reg.RegisterSessions(ctx, &presencev1.RegisterSessionsRequest{Sessions: sessions}); err != nil {
		t.Fatal(err)
	}
	// c goes offline, so has a last-seen time.
	if _, err := f.reg.UnregisterSessions(ctx, &presencev1.UnregisterSessionsRequest{Sessions: sessions[2:]}); err != nil {
		t.Fatal(err)
	}
	f.block(t, "a", "v")
	f.block(t, "c", "v")

	for _, tc := range []struct {
		viewer string
		want   []string
	}{
		{"v", []string{"a OFFLINE", "b ONLINE", "c OFFLINE"}},
		{"w", []string{"a ONLINE", "b ONLINE", "c OFFLINE seen"}},
	} {
		t.Run(tc.viewer, func(t *testing.T) {
			res, err := f.svc.GetPresence(auth.WithIdentity(ctx, auth.Identity{UserID: tc.viewer}),
				&presencev1.GetPresenceRequest{UserIds: []string{"a", "b", "c"}})
			if err != nil {
				t.Fatalf("GetPresence: %v", err)
			}
			var got []string
			for _, p := range res.GetPresences() {
				s := p.GetUserId() + " " + p.GetStatus().String()[len("PRESENCE_STATUS_"):]
				if p.GetLastSeenTime() != nil {
					s += " seen"
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("presence for %s = %v, want %v", tc.viewer, got, tc.want)
			}
		})
	}
}

func TestBlockVisibilityErrors(t *testing.T) {
	f := newBlockVisFixture(t)
	ctx := auth.WithIdentity(t.Context(), auth.Identity{UserID: "v"})

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := f.vis.Hidden(canceled, "v", []string{"a"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Hidden with a canceled context: %v, want context.Canceled", err)
	}

	// Redis unreachable: PresenceService answers Unavailable, not "online".
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer broken.Close()
	reg := presence.NewRedisRegistry(f.client, f.prefix, testLogger(t), presence.RegistryConfig{})
	svc := presence.NewService(reg, testLogger(t), presence.ServiceConfig{Visibility: presence.NewBlockVisibility(broken, f.prefix)})
	_, err = svc.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{"a"}})
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("GetPresence with Redis down: %v, want Unavailable", err)
	}
}
