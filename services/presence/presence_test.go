package presence_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/services/presence"
)

// clock is a settable clock, so TTL tests move time instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type event struct {
	user   string
	online bool
	at     time.Time
}

func (e event) String() string {
	state := "offline"
	if e.online {
		state = "online"
	}
	return fmt.Sprintf("%s %s at %s", e.user, state, e.at.Format(time.RFC3339Nano))
}

type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) onChange(user string, online bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{user, online, at})
}

// take returns and forgets the events so far.
func (r *recorder) take() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// implementation builds one kind of registry for a test. The conformance
// tests run against each of implementations.
type implementation struct {
	name string
	new  func(t testing.TB, cfg presence.RegistryConfig) *presence.Registry
}

var implementations = []implementation{
	{"redis", func(t testing.TB, cfg presence.RegistryConfig) *presence.Registry {
		client, prefix := redistest.New(t)
		return presence.NewRedisRegistry(client, prefix, testLogger(t), cfg)
	}},
	{"memory", func(t testing.TB, cfg presence.RegistryConfig) *presence.Registry {
		return presence.NewMemoryRegistry(testLogger(t), cfg)
	}},
}

// conform runs test once against each implementation.
func conform(t *testing.T, test func(t *testing.T, impl implementation)) {
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) { test(t, impl) })
	}
}

type fixture struct {
	reg    *presence.Registry
	svc    *presence.Service
	clock  *clock
	events *recorder
	ttl    time.Duration
}

func newFixture(t testing.TB, impl implementation, vis presence.Visibility) *fixture {
	f := &fixture{
		clock:  &clock{now: time.Now().Truncate(time.Millisecond)},
		events: &recorder{},
		ttl:    presence.DefaultSessionTTL,
	}
	f.reg = impl.new(t, presence.RegistryConfig{
		OnChange: f.events.onChange,
		Now:      f.clock.Now,
	})
	f.svc = presence.NewService(f.reg, testLogger(t), presence.ServiceConfig{Visibility: vis})
	return f
}

// newRedisFixture is a fixture on client's Redis, for Redis-only tests.
func newRedisFixture(t testing.TB, client *redis.Client, prefix string) *fixture {
	return newFixture(t, implementation{"redis", func(t testing.TB, cfg presence.RegistryConfig) *presence.Registry {
		return presence.NewRedisRegistry(client, prefix, testLogger(t), cfg)
	}}, nil)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// session builds a session on edge-1 that logged in now.
func (f *fixture) session(id, user, device string) *presencev1.Session {
	return &presencev1.Session{
		SessionId: id, UserId: user, DeviceId: device, EdgeId: "edge-1",
		LoginTime: timestamppb.New(f.clock.Now()),
	}
}

func (f *fixture) register(t *testing.T, sessions ...*presencev1.Session) {
	t.Helper()
	if _, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: sessions}); err != nil {
		t.Fatalf("RegisterSessions: %v", err)
	}
}

func (f *fixture) renew(t *testing.T, sessions ...*presencev1.Session) uint32 {
	t.Helper()
	res, err := f.reg.RenewSessions(t.Context(), &presencev1.RenewSessionsRequest{EdgeId: "edge-1", Sessions: sessions})
	if err != nil {
		t.Fatalf("RenewSessions: %v", err)
	}
	return res.GetRestored()
}

func (f *fixture) unregister(t *testing.T, sessions ...*presencev1.Session) {
	t.Helper()
	if _, err := f.reg.UnregisterSessions(t.Context(), &presencev1.UnregisterSessionsRequest{Sessions: sessions}); err != nil {
		t.Fatalf("UnregisterSessions: %v", err)
	}
}

// lookup returns the users' live sessions as "session/user/device/edge/login" lines.
func (f *fixture) lookup(t *testing.T, users ...string) []string {
	t.Helper()
	res, err := f.reg.LookupSessions(t.Context(), &presencev1.LookupSessionsRequest{UserIds: users})
	if err != nil {
		t.Fatalf("LookupSessions: %v", err)
	}
	return describe(res.GetSessions()...)
}

// sweep runs one Sweep and returns how many users it checked.
func (f *fixture) sweep(t *testing.T) int {
	t.Helper()
	n, err := f.reg.Sweep(t.Context())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	return n
}

func describe(sessions ...*presencev1.Session) []string {
	var out []string
	for _, s := range sessions {
		out = append(out, fmt.Sprintf("%s/%s/%s/%s/%d", s.GetSessionId(), s.GetUserId(), s.GetDeviceId(), s.GetEdgeId(), s.GetLoginTime().AsTime().UnixMilli()))
	}
	return out
}

func (f *fixture) presence(t *testing.T, users ...string) []string {
	t.Helper()
	ctx := auth.WithIdentity(t.Context(), auth.Identity{UserID: "viewer", DeviceID: "d"})
	res, err := f.svc.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: users})
	if err != nil {
		t.Fatalf("GetPresence: %v", err)
	}
	return describePresence(res.GetPresences())
}

func describePresence(ps []*presencev1.UserPresence) []string {
	var out []string
	for _, p := range ps {
		line := fmt.Sprintf("%s %s devices=%d", p.GetUserId(), strings.TrimPrefix(p.GetStatus().String(), "PRESENCE_STATUS_"), p.GetDeviceCount())
		if p.LastSeenTime != nil {
			line += fmt.Sprintf(" seen=%d", p.GetLastSeenTime().AsTime().UnixMilli())
		}
		out = append(out, line)
	}
	return out
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func equal[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

func TestRegistry(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"registers, looks up and unregisters", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			s1, s2 := f.session("s1", "u1", "d1"), f.session("s2", "u2", "d9")
			s2.EdgeId = "edge-2"
			f.register(t, s1, s2)
			equal(t, "lookup", f.lookup(t, "u1", "u2", "u3"), []string{
				fmt.Sprintf("s1/u1/d1/edge-1/%d", ms(t0)),
				fmt.Sprintf("s2/u2/d9/edge-2/%d", ms(t0)),
			})
			f.clock.Advance(5 * time.Second)
			f.unregister(t, &presencev1.Session{SessionId: "s1", UserId: "u1"})
			equal(t, "lookup after unregister", f.lookup(t, "u1", "u2"), []string{
				fmt.Sprintf("s2/u2/d9/edge-2/%d", ms(t0)),
			})
			equal(t, "events", f.events.take(), []event{
				{"u1", true, t0}, {"u2", true, t0}, {"u1", false, t0.Add(5 * time.Second)},
			})
			// Unknown sessions are ignored.
			f.unregister(t, &presencev1.Session{SessionId: "nope", UserId: "u1"})
			equal(t, "events after unknown unregister", f.events.take(), nil)
		}},
		{"keeps a user online while any device is", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			phone, laptop, phone2 := f.session("s1", "u1", "phone"), f.session("s2", "u1", "laptop"), f.session("s3", "u1", "phone")
			f.register(t, phone)
			f.register(t, laptop, phone2)
			equal(t, "presence", f.presence(t, "u1"), []string{"u1 ONLINE devices=2"})
			f.unregister(t, phone, laptop)
			equal(t, "presence with one session left", f.presence(t, "u1"), []string{"u1 ONLINE devices=1"})
			f.clock.Advance(time.Second)
			f.unregister(t, phone2)
			equal(t, "presence when all left", f.presence(t, "u1"), []string{
				fmt.Sprintf("u1 OFFLINE devices=0 seen=%d", ms(t0.Add(time.Second))),
			})
			equal(t, "events", f.events.take(), []event{{"u1", true, t0}, {"u1", false, t0.Add(time.Second)}})
		}},
		{"renewal keeps sessions alive, silence expires them", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			s := f.session("s1", "u1", "d1")
			f.register(t, s)
			f.clock.Advance(40 * time.Second)
			if n := f.renew(t, s); n != 0 {
				t.Fatalf("renewing a live session restored %d", n)
			}
			renewed := f.clock.Now()
			f.clock.Advance(40 * time.Second) // past the first TTL
			if got := f.lookup(t, "u1"); len(got) != 1 {
				t.Fatalf("renewed session gone: %v", got)
			}
			f.clock.Advance(f.ttl - 40*time.Second) // exactly one TTL after the renewal
			equal(t, "lookup after TTL", f.lookup(t, "u1"), nil)
			equal(t, "presence after TTL", f.presence(t, "u1"), []string{
				fmt.Sprintf("u1 OFFLINE devices=0 seen=%d", ms(renewed)),
			})
			// The lookup that found the session expired reported it once.
			equal(t, "events", f.events.take(), []event{{"u1", true, t0}, {"u1", false, renewed}})
		}},
		{"renewal restores sessions the registry lost", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			s1, s2 := f.session("s1", "u1", "d1"), f.session("s2", "u2", "d2")
			f.register(t, s1)
			f.clock.Advance(f.ttl + time.Second)
			t1 := f.clock.Now()
			s3 := f.session("s3", "u1", "d3")
			if n := f.renew(t, s1, s2, s3); n != 3 {
				t.Fatalf("restored %d, want 3", n)
			}
			if n := f.renew(t, s1, s2, s3); n != 0 {
				t.Fatalf("second renewal restored %d, want 0", n)
			}
			if got := f.lookup(t, "u1", "u2"); len(got) != 3 {
				t.Fatalf("lookup after restore: %v", got)
			}
			// u1 expired unnoticed, then came back: both transitions, in order.
			equal(t, "events", f.events.take(), []event{
				{"u1", true, t0}, {"u1", false, t0}, {"u1", true, t1}, {"u2", true, t1},
			})
		}},
		{"renewal fills in the edge", func(t *testing.T, f *fixture) {
			s := f.session("s1", "u1", "d1")
			s.EdgeId = ""
			if n := f.renew(t, s); n != 1 {
				t.Fatalf("restored %d, want 1", n)
			}
			if got := f.lookup(t, "u1"); len(got) != 1 || !strings.Contains(got[0], "/edge-1/") {
				t.Fatalf("lookup: %v", got)
			}
		}},
		{"unregistering an expired session reports it offline", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			s := f.session("s1", "u1", "d1")
			f.register(t, s)
			f.clock.Advance(2 * f.ttl)
			f.unregister(t, s)
			// Its edge held it until now, so it was last seen now.
			equal(t, "events", f.events.take(), []event{{"u1", true, t0}, {"u1", false, f.clock.Now()}})
		}},
		{"reports each transition once under concurrent writes", func(t *testing.T, f *fixture) {
			const n = 20
			var sessions []*presencev1.Session
			for i := range n {
				sessions = append(sessions, f.session(fmt.Sprint("s", i), "u1", fmt.Sprint("d", i)))
			}
			var wg sync.WaitGroup
			for _, s := range sessions {
				wg.Go(func() {
					req := &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{s}}
					if _, err := f.reg.RegisterSessions(t.Context(), req); err != nil {
						t.Errorf("RegisterSessions: %v", err)
					}
				})
			}
			wg.Wait()
			for _, s := range sessions {
				wg.Go(func() {
					req := &presencev1.UnregisterSessionsRequest{Sessions: []*presencev1.Session{s}}
					if _, err := f.reg.UnregisterSessions(t.Context(), req); err != nil {
						t.Errorf("UnregisterSessions: %v", err)
					}
				})
			}
			wg.Wait()
			t0 := f.clock.Now()
			equal(t, "events", f.events.take(), []event{{"u1", true, t0}, {"u1", false, t0}})
		}},
		{"keeps devices on several edges apart", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			phone, laptop, other := f.session("s1", "u1", "phone"), f.session("s2", "u1", "laptop"), f.session("s3", "u2", "d1")
			laptop.EdgeId, other.EdgeId = "edge-2", "edge-2"
			f.register(t, phone, laptop, other)
			equal(t, "presence", f.presence(t, "u1", "u2"), []string{"u1 ONLINE devices=2", "u2 ONLINE devices=1"})
			// edge-2 dies; edge-1 keeps renewing.
			f.clock.Advance(f.ttl / 2)
			f.renew(t, phone)
			f.clock.Advance(f.ttl/2 + time.Second)
			if n := f.sweep(t); n != 1 {
				t.Fatalf("sweep checked %d users, want u2 only", n)
			}
			equal(t, "lookup", f.lookup(t, "u1", "u2"), []string{fmt.Sprintf("s1/u1/phone/edge-1/%d", ms(t0))})
			equal(t, "presence after edge-2 died", f.presence(t, "u1", "u2"), []string{
				"u1 ONLINE devices=1", fmt.Sprintf("u2 OFFLINE devices=0 seen=%d", ms(t0)),
			})
			equal(t, "events", f.events.take(), []event{{"u1", true, t0}, {"u2", true, t0}, {"u2", false, t0}})
			// u1's laptop expired while the phone stayed: no offline for u1.
			f.clock.Advance(time.Second)
			f.unregister(t, phone)
			equal(t, "presence after the phone left", f.presence(t, "u1"), []string{
				fmt.Sprintf("u1 OFFLINE devices=0 seen=%d", ms(f.clock.Now())),
			})
			equal(t, "events after the phone left", f.events.take(), []event{{"u1", false, f.clock.Now()}})
		}},
		{"sweeps the users of dead edges once", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			f.register(t, f.session("s1", "gone", "d1"), f.session("s2", "alive", "d1"))
			f.events.take()
			f.clock.Advance(f.ttl / 2)
			f.renew(t, f.session("s2", "alive", "d1"))
			if n := f.sweep(t); n != 0 {
				t.Fatalf("sweep before anything expired checked %d users", n)
			}
			f.clock.Advance(f.ttl/2 + time.Second) // "gone" expired; "alive" was renewed
			if n := f.sweep(t); n != 1 {
				t.Fatalf("sweep checked %d users, want 1", n)
			}
			equal(t, "events", f.events.take(), []event{{"gone", false, t0}})
			if n := f.sweep(t); n != 0 {
				t.Fatalf("a second sweep checked %d users again", n)
			}
			equal(t, "events after a second sweep", f.events.take(), nil)
		}},
		{"sweeps in batches", func(t *testing.T, f *fixture) {
			const users = 1500
			var sessions []*presencev1.Session
			for i := range users {
				sessions = append(sessions, f.session(fmt.Sprint("s", i), fmt.Sprint("u", i), "d1"))
			}
			f.register(t, sessions...)
			f.events.take()
			f.clock.Advance(f.ttl)
			for _, want := range []int{1000, 500, 0} {
				if n := f.sweep(t); n != want {
					t.Fatalf("sweep checked %d users, want %d", n, want)
				}
			}
			offline := map[string]bool{}
			for _, e := range f.events.take() {
				if e.online || offline[e.user] {
					t.Fatalf("unexpected %v", e)
				}
				offline[e.user] = true
			}
			if len(offline) != users {
				t.Fatalf("%d users reported offline, want %d", len(offline), users)
			}
		}},
		{"sweeps users who left only once their sessions would have expired", func(t *testing.T, f *fixture) {
			s := f.session("s1", "u1", "d1")
			f.register(t, s)
			f.unregister(t, s)
			f.events.take()
			if n := f.sweep(t); n != 0 {
				t.Fatalf("sweep checked %d users before the expiry", n)
			}
			f.clock.Advance(f.ttl)
			if n := f.sweep(t); n != 1 {
				t.Fatalf("sweep checked %d users, want 1", n)
			}
			equal(t, "events", f.events.take(), nil)
		}},
		{"the sweeper reports dead edges' users", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			f.register(t, f.session("s1", "u1", "d1"))
			f.events.take()
			f.clock.Advance(f.ttl)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				defer close(done)
				f.reg.RunSweeper(ctx, 10*time.Millisecond)
			}()
			var got []event
			for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				got = f.events.take()
			}
			cancel()
			<-done
			equal(t, "events", got, []event{{"u1", false, t0}})
		}},
		{"last seen is the last register, renew or unregister", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			s := f.session("s1", "u1", "d1")
			f.register(t, s)
			f.clock.Advance(10 * time.Second)
			f.renew(t, s)
			f.clock.Advance(f.ttl) // expired: last seen at the renewal
			equal(t, "presence after expiry", f.presence(t, "u1"), []string{
				fmt.Sprintf("u1 OFFLINE devices=0 seen=%d", ms(t0.Add(10*time.Second))),
			})
			f.register(t, s)
			f.clock.Advance(time.Second)
			f.unregister(t, s)
			equal(t, "presence after unregister", f.presence(t, "u1"), []string{
				fmt.Sprintf("u1 OFFLINE devices=0 seen=%d", ms(f.clock.Now())),
			})
			// Unregistering what is gone leaves last seen alone.
			f.clock.Advance(time.Second)
			f.unregister(t, s)
			equal(t, "presence after a repeated unregister", f.presence(t, "u1"), []string{
				fmt.Sprintf("u1 OFFLINE devices=0 seen=%d", ms(f.clock.Now().Add(-time.Second))),
			})
		}},
		{"looks up many users in request order, oldest login first", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			var users, want []string
			var sessions []*presencev1.Session
			for i := range 2000 {
				u := fmt.Sprint("u", i)
				users = append(users, u)
				if i%2 == 1 {
					continue // never seen
				}
				// The newer session first, so order comes from login times.
				newer, older := f.session(fmt.Sprint("b", i), u, "laptop"), f.session(fmt.Sprint("a", i), u, "phone")
				older.LoginTime = timestamppb.New(t0.Add(-time.Hour))
				sessions = append(sessions, newer, older)
				want = append(want,
					fmt.Sprintf("a%d/%s/phone/edge-1/%d", i, u, ms(t0.Add(-time.Hour))),
					fmt.Sprintf("b%d/%s/laptop/edge-1/%d", i, u, ms(t0)))
			}
			f.register(t, sessions...)
			// Repeated users are answered once.
			equal(t, "lookup", f.lookup(t, append(users, users[:10]...)...), want)
			equal(t, "lookup of nobody", f.lookup(t), nil)
		}},
		{"hands out copies", func(t *testing.T, f *fixture) {
			f.register(t, f.session("s1", "u1", "d1"))
			res, err := f.reg.LookupSessions(t.Context(), &presencev1.LookupSessionsRequest{UserIds: []string{"u1"}})
			if err != nil {
				t.Fatal(err)
			}
			want := describe(res.GetSessions()...)
			res.GetSessions()[0].DeviceId = "changed"
			equal(t, "lookup", f.lookup(t, "u1"), want)
		}},
		{"answers presence per user", func(t *testing.T, f *fixture) {
			t0 := f.clock.Now()
			f.register(t, f.session("s1", "on", "d1"), f.session("s2", "gone", "d1"))
			f.unregister(t, f.session("s2", "gone", "d1"))
			equal(t, "presence", f.presence(t, "on", "gone", "never", "on"), []string{
				"on ONLINE devices=1",
				fmt.Sprintf("gone OFFLINE devices=0 seen=%d", ms(t0)),
				"never OFFLINE devices=0",
			})
		}},
	}
	conform(t, func(t *testing.T, impl implementation) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.run(t, newFixture(t, impl, nil))
			})
		}
	})
}

// hideFrom hides users from one viewer, as blocking will.
type hideFrom map[string][]string

func (h hideFrom) Hidden(_ context.Context, viewer string, users []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, u := range h[viewer] {
		if slices.Contains(users, u) {
			out[u] = true
		}
	}
	return out, nil
}

func TestPresenceVisibility(t *testing.T) {
	conform(t, func(t *testing.T, impl implementation) {
		f := newFixture(t, impl, hideFrom{"viewer": {"blocker", "blocker-gone"}})
		gone := f.session("s3", "blocker-gone", "d1")
		f.register(t, f.session("s1", "blocker", "d1"), f.session("s2", "friend", "d1"), gone)
		f.unregister(t, gone)
		// Hidden users look never seen, whether online or not.
		equal(t, "presence", f.presence(t, "blocker", "blocker-gone", "friend"), []string{
			"blocker OFFLINE devices=0", "blocker-gone OFFLINE devices=0", "friend ONLINE devices=1",
		})
	})
}

// countPipelines counts round trips (single commands and pipelines).
type countPipelines struct {
	mu sync.Mutex
	n  int
}

func (c *countPipelines) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *countPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add()
		return next(ctx, cmd)
	}
}
func (c *countPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.add()
		return next(ctx, cmds)
	}
}
func (c *countPipelines) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *countPipelines) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = 0
	return n
}

func TestBatchesInOneRoundTrip(t *testing.T) {
	client, prefix := redistest.New(t)
	f := newRedisFixture(t, client, prefix)
	var users []string
	var sessions []*presencev1.Session
	for i := range 1000 {
		u := fmt.Sprint("u", i)
		users = append(users, u)
		sessions = append(sessions, f.session(fmt.Sprint("s", i), u, "d1"))
	}
	f.register(t, sessions...) // loads the scripts if Redis lacks them
	trips := &countPipelines{}
	client.AddHook(trips)

	f.renew(t, sessions...)
	if n := trips.take(); n != 1 {
		t.Errorf("renewing 1000 sessions took %d round trips, want 1", n)
	}
	if got := f.lookup(t, users...); len(got) != 1000 {
		t.Fatalf("lookup of 1000 users found %d sessions", len(got))
	}
	if n := trips.take(); n != 1 {
		t.Errorf("looking up 1000 users took %d round trips, want 1", n)
	}
	if got := f.presence(t, users[:500]...); len(got) != 500 || got[499] != "u499 ONLINE devices=1" {
		t.Fatalf("presence of 500 users: %d answers, last %q", len(got), got[len(got)-1])
	}
	if n := trips.take(); n != 1 {
		t.Errorf("presence of 500 users took %d round trips, want 1", n)
	}
}

// TestSessionsExpireInRedis uses the real clock and a short TTL: a dead
// edge's keys disappear from Redis without anyone reading them.
func TestSessionsExpireInRedis(t *testing.T) {
	client, prefix := redistest.New(t)
	reg := presence.NewRedisRegistry(client, prefix, testLogger(t), presence.RegistryConfig{SessionTTL: 200 * time.Millisecond})
	_, err := reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{
		{SessionId: "s1", UserId: "u1", DeviceId: "d1", EdgeId: "dead-edge"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys, err := client.Keys(t.Context(), prefix+"sess:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session keys still there: %v", keys)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err := reg.LookupSessions(t.Context(), &presencev1.LookupSessionsRequest{UserIds: []string{"u1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetSessions()) != 0 {
		t.Fatalf("expired sessions returned: %v", res.GetSessions())
	}
}

func TestValidation(t *testing.T) {
	conform(t, testValidation)
}

func testValidation(t *testing.T, impl implementation) {
	f := newFixture(t, impl, nil)
	ok := func() *presencev1.Session { return f.session("s1", "u1", "d1") }
	with := func(edit func(*presencev1.Session)) *presencev1.Session { s := ok(); edit(s); return s }
	many := func(n int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprint("u", i)
		}
		return ids
	}
	manySessions := make([]*presencev1.Session, presence.MaxSessionsPerCall+1)
	for i := range manySessions {
		manySessions[i] = f.session(fmt.Sprint("s", i), "u1", "d1")
	}
	viewer := auth.WithIdentity(t.Context(), auth.Identity{UserID: "viewer"})
	tests := []struct {
		name string
		call func() error
		code connect.Code
		msg  string
	}{
		{"register without session id", func() error {
			_, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{ok(), with(func(s *presencev1.Session) { s.SessionId = "" })}})
			return err
		}, connect.CodeInvalidArgument, "sessions[1].session_id is empty"},
		{"register without user id", func() error {
			_, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{with(func(s *presencev1.Session) { s.UserId = "" })}})
			return err
		}, connect.CodeInvalidArgument, "sessions[0].user_id is empty"},
		{"register without device id", func() error {
			_, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{with(func(s *presencev1.Session) { s.DeviceId = "" })}})
			return err
		}, connect.CodeInvalidArgument, "sessions[0].device_id is empty"},
		{"register without edge id", func() error {
			_, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{with(func(s *presencev1.Session) { s.EdgeId = "" })}})
			return err
		}, connect.CodeInvalidArgument, "sessions[0].edge_id is empty"},
		{"register a session twice", func() error {
			_, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{ok(), ok()}})
			return err
		}, connect.CodeInvalidArgument, "sessions[1].session_id repeats sessions[0]"},
		{"register an overlong id", func() error {
			_, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{with(func(s *presencev1.Session) { s.DeviceId = strings.Repeat("x", 300) })}})
			return err
		}, connect.CodeInvalidArgument, "sessions[0].device_id is longer than 256 bytes"},
		{"register too many", func() error {
			_, err := f.reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: manySessions})
			return err
		}, connect.CodeInvalidArgument, "at most 10000 sessions per call, got 10001"},
		{"renew without edge id", func() error {
			_, err := f.reg.RenewSessions(t.Context(), &presencev1.RenewSessionsRequest{Sessions: []*presencev1.Session{ok()}})
			return err
		}, connect.CodeInvalidArgument, "edge_id is empty"},
		{"renew another edge's session", func() error {
			_, err := f.reg.RenewSessions(t.Context(), &presencev1.RenewSessionsRequest{EdgeId: "edge-2", Sessions: []*presencev1.Session{ok()}})
			return err
		}, connect.CodeInvalidArgument, `sessions[0].edge_id is "edge-1", not the renewing edge "edge-2"`},
		{"unregister without user id", func() error {
			_, err := f.reg.UnregisterSessions(t.Context(), &presencev1.UnregisterSessionsRequest{Sessions: []*presencev1.Session{{SessionId: "s1"}}})
			return err
		}, connect.CodeInvalidArgument, "sessions[0].user_id is empty"},
		{"lookup an empty user id", func() error {
			_, err := f.reg.LookupSessions(t.Context(), &presencev1.LookupSessionsRequest{UserIds: []string{"u1", ""}})
			return err
		}, connect.CodeInvalidArgument, "user_ids[1] is empty"},
		{"lookup too many users", func() error {
			_, err := f.reg.LookupSessions(t.Context(), &presencev1.LookupSessionsRequest{UserIds: many(presence.MaxLookupUsers + 1)})
			return err
		}, connect.CodeInvalidArgument, "at most 10000 user_ids per call, got 10001"},
		{"presence of too many users", func() error {
			_, err := f.svc.GetPresence(viewer, &presencev1.GetPresenceRequest{UserIds: many(presence.MaxPresenceUsers + 1)})
			return err
		}, connect.CodeInvalidArgument, "at most 500 user_ids per call, got 501"},
		{"presence without a caller", func() error {
			_, err := f.svc.GetPresence(t.Context(), &presencev1.GetPresenceRequest{UserIds: []string{"u1"}})
			return err
		}, connect.CodeUnauthenticated, "presence: no caller identity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ce *connect.Error
			if err := tt.call(); !errors.As(err, &ce) {
				t.Fatalf("got %v, want a connect error", err)
			}
			if ce.Code() != tt.code || ce.Message() != tt.msg {
				t.Fatalf("got %v %q, want %v %q", ce.Code(), ce.Message(), tt.code, tt.msg)
			}
		})
	}
}

func BenchmarkLookupSessions(b *testing.B) {
	for _, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) { benchmarkLookupSessions(b, impl) })
	}
}

func benchmarkLookupSessions(b *testing.B, impl implementation) {
	f := newFixture(b, impl, nil)
	var users []string
	var sessions []*presencev1.Session
	for i := range 1000 {
		u := fmt.Sprint("u", i)
		users = append(users, u)
		// Two devices each, as chat users often have.
		sessions = append(sessions, f.session(fmt.Sprint("a", i), u, "phone"), f.session(fmt.Sprint("b", i), u, "laptop"))
	}
	if _, err := f.reg.RegisterSessions(b.Context(), &presencev1.RegisterSessionsRequest{Sessions: sessions}); err != nil {
		b.Fatal(err)
	}
	req := &presencev1.LookupSessionsRequest{UserIds: users}
	for b.Loop() {
		res, err := f.reg.LookupSessions(b.Context(), req)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.GetSessions()) != 2000 {
			b.Fatalf("found %d sessions", len(res.GetSessions()))
		}
	}
}
