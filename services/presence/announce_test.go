package presence_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/services/presence"
)

// heard collects the presence changes published for one user.
type heard struct {
	mu      sync.Mutex
	changes []*busv1.PresenceChange
}

func (h *heard) add(_ string, payload []byte) {
	c := &busv1.PresenceChange{}
	if err := proto.Unmarshal(payload, c); err != nil {
		panic(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.changes = append(h.changes, c)
}

func (h *heard) statuses() []presencev1.PresenceStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []presencev1.PresenceStatus
	for _, c := range h.changes {
		s = append(s, c.GetPresence().GetStatus())
	}
	return s
}

func TestAnnouncerAbsorbsQuickReconnects(t *testing.T) {
	client, prefix := redistest.New(t)
	b := bus.NewMemory()
	defer b.Close()
	const grace = 300 * time.Millisecond
	ann := presence.NewAnnouncer(grace, b, client, prefix, testLogger(t))
	reg := presence.NewRedisRegistry(client, prefix, testLogger(t), presence.RegistryConfig{OnChange: ann.Change})
	ann.SetRegistry(reg)
	client.SAdd(context.Background(), presence.BlockedKey(prefix, "u1"), "blocked-by-u1")

	h := &heard{}
	subs, err := b.Subscribe(context.Background(), h.add, bus.PresenceChannel("u1"))
	if err != nil {
		t.Fatal(err)
	}
	defer subs[0].Close()
	sess := &presencev1.Session{SessionId: "s1", UserId: "u1", DeviceId: "d1", EdgeId: "e1"}
	register := func() {
		if _, err := reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{sess}}); err != nil {
			t.Fatal(err)
		}
	}
	unregister := func() {
		if _, err := reg.UnregisterSessions(t.Context(), &presencev1.UnregisterSessionsRequest{Sessions: []*presencev1.Session{sess}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(n int) []presencev1.PresenceStatus {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(h.statuses()) < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return h.statuses()
	}

	register()
	if got := waitFor(1); len(got) != 1 || got[0] != presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		t.Fatalf("after the first session: %v, want ONLINE", got)
	}
	// A drop and reconnect inside the grace is invisible.
	unregister()
	register()
	time.Sleep(2 * grace)
	if got := h.statuses(); len(got) != 1 {
		t.Fatalf("a quick reconnect announced %v, want nothing more", got)
	}
	// Gone for longer than the grace: one OFFLINE with the last-seen time.
	unregister()
	got := waitFor(2)
	if len(got) != 2 || got[1] != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
		t.Fatalf("after leaving: %v, want ONLINE, OFFLINE", got)
	}
	h.mu.Lock()
	last := h.changes[1]
	h.mu.Unlock()
	if last.GetPresence().GetLastSeenTime() == nil || len(last.GetHiddenFromUserIds()) != 1 {
		t.Fatalf("offline change %v, want a last-seen time and the blocked user hidden", last)
	}
}

// relatedTo is a RelatedFilter relating the viewer to a fixed set of users.
type relatedTo []string

func (r relatedTo) FilterRelated(_ context.Context, req *chatv1.FilterRelatedRequest) (*chatv1.FilterRelatedResponse, error) {
	res := &chatv1.FilterRelatedResponse{}
	for _, id := range req.GetUserIds() {
		for _, ok := range r {
			if id == ok {
				res.RelatedUserIds = append(res.RelatedUserIds, id)
			}
		}
	}
	return res, nil
}

func TestPresenceIsShownToRelatedUsersOnly(t *testing.T) {
	client, prefix := redistest.New(t)
	reg := presence.NewRedisRegistry(client, prefix, testLogger(t), presence.RegistryConfig{})
	svc := presence.NewService(reg, testLogger(t), presence.ServiceConfig{Visibility: presence.AllOf{
		presence.NewRelationVisibility(relatedTo{"friend", "blocker"}),
		presence.NewBlockVisibility(client, prefix),
	}})
	var sessions []*presencev1.Session
	for _, u := range []string{"friend", "stranger", "blocker"} {
		sessions = append(sessions, &presencev1.Session{SessionId: "s-" + u, UserId: u, DeviceId: "d", EdgeId: "e1"})
	}
	if _, err := reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: sessions}); err != nil {
		t.Fatal(err)
	}
	client.SAdd(t.Context(), presence.BlockersKey(prefix, "viewer"), "blocker")
	res, err := svc.GetPresence(auth.WithIdentity(t.Context(), auth.Identity{UserID: "viewer", DeviceID: "d"}),
		&presencev1.GetPresenceRequest{UserIds: []string{"friend", "stranger", "blocker"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		status presencev1.PresenceStatus
		hidden bool
	}{
		{presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE, false}, // a contact or partner
		{presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE, true}, // unrelated
		{presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE, true}, // related, but blocked the viewer
	} {
		p := res.GetPresences()[i]
		if p.GetStatus() != want.status || p.GetHidden() != want.hidden || (want.hidden && p.GetLastSeenTime() != nil) {
			t.Errorf("%s: %v, want status %v hidden %v", p.GetUserId(), p, want.status, want.hidden)
		}
	}
}
