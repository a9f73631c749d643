package presence_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/auth"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/services/presence"
)

// asViewer stands in for the auth interceptor: every call is "viewer".
var asViewer = connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		return next(auth.WithIdentity(ctx, auth.Identity{UserID: "viewer", DeviceID: "d"}), req)
	}
})

// TestOverConnect calls both services through generated clients over HTTP/2.
func TestOverConnect(t *testing.T) {
	conform(t, testOverConnect)
}

func testOverConnect(t *testing.T, impl implementation) {
	f := newFixture(t, impl, nil)
	mux := http.NewServeMux()
	mux.Handle(presencev1connect.NewSessionRegistryServiceHandler(f.reg))
	mux.Handle(presencev1connect.NewPresenceServiceHandler(f.svc, connect.WithInterceptors(asViewer)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only", http.StatusHTTPVersionNotSupported)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	registry := presencev1connect.NewSessionRegistryServiceClient(srv.Client(), srv.URL)
	presences := presencev1connect.NewPresenceServiceClient(srv.Client(), srv.URL, connect.WithGRPC())
	ctx := t.Context()

	s := f.session("s1", "u1", "phone")
	if _, err := registry.RegisterSessions(ctx, &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{s}}); err != nil {
		t.Fatalf("RegisterSessions: %v", err)
	}
	res, err := registry.RenewSessions(ctx, &presencev1.RenewSessionsRequest{EdgeId: "edge-1", Sessions: []*presencev1.Session{s}})
	if err != nil || res.GetRestored() != 0 {
		t.Fatalf("RenewSessions: %v, restored %d", err, res.GetRestored())
	}
	found, err := registry.LookupSessions(ctx, &presencev1.LookupSessionsRequest{UserIds: []string{"u1", "u2"}})
	if err != nil {
		t.Fatalf("LookupSessions: %v", err)
	}
	equal(t, "lookup", describe(found.GetSessions()...), describe(s))

	got, err := presences.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{"u1", "u2"}})
	if err != nil {
		t.Fatalf("GetPresence: %v", err)
	}
	equal(t, "presence", describePresence(got.GetPresences()), []string{"u1 ONLINE devices=1", "u2 OFFLINE devices=0"})

	if _, err := registry.UnregisterSessions(ctx, &presencev1.UnregisterSessionsRequest{Sessions: []*presencev1.Session{s}}); err != nil {
		t.Fatalf("UnregisterSessions: %v", err)
	}
	got, err = presences.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{"u1"}})
	if err != nil {
		t.Fatalf("GetPresence: %v", err)
	}
	equal(t, "presence after unregister", describePresence(got.GetPresences()), []string{
		fmt.Sprintf("u1 OFFLINE devices=0 seen=%d", ms(f.clock.Now())),
	})

	_, err = registry.LookupSessions(ctx, &presencev1.LookupSessionsRequest{UserIds: []string{""}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("LookupSessions of an empty id: got %v, want InvalidArgument", err)
	}
}

// TestRedisRestart runs against a redis-server of its own: after a restart
// Redis has forgotten the scripts and the sessions, and the registry reloads
// the scripts and lets the edge's renewal restore the sessions.
func TestRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a redis-server")
	}
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	reg := presence.NewRedisRegistry(client, "test:", testLogger(t), presence.RegistryConfig{})
	sessions := []*presencev1.Session{
		{SessionId: "s1", UserId: "u1", DeviceId: "d1", EdgeId: "edge-1"},
		{SessionId: "s2", UserId: "u2", DeviceId: "d1", EdgeId: "edge-1"},
	}
	renew := func() uint32 {
		t.Helper()
		res, err := reg.RenewSessions(t.Context(), &presencev1.RenewSessionsRequest{EdgeId: "edge-1", Sessions: sessions})
		if err != nil {
			t.Fatalf("RenewSessions: %v", err)
		}
		return res.GetRestored()
	}
	if n := renew(); n != 2 { // on a fresh server: NOSCRIPT, load, retry
		t.Fatalf("first renewal restored %d, want 2", n)
	}
	if n := renew(); n != 0 {
		t.Fatalf("second renewal restored %d, want 0", n)
	}

	srv.Stop()
	if _, err := reg.RenewSessions(t.Context(), &presencev1.RenewSessionsRequest{EdgeId: "edge-1", Sessions: sessions}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("renewal with Redis down: got %v, want Unavailable", err)
	}
	srv.Start()
	if n := renew(); n != 2 {
		t.Fatalf("renewal after restart restored %d, want 2", n)
	}
}
