package contact_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	contactv1 "github.com/wagglechat/waggle/gen/go/waggle/contact/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/contact/v1/contactv1connect"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/services/contact"
	"github.com/wagglechat/waggle/services/presence"
)

var (
	_ contact.Querier      = (*pgxpool.Pool)(nil)
	_ contact.Querier      = pgx.Tx(nil)
	_ contact.UserNotifier = (*recorder)(nil)
)

// Test headers stand in for the auth interceptor.
const (
	userHeader    = "Test-User-Id"
	sessionHeader = "Test-Session-Id"
)

var testAuth = connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if u := req.Header().Get(userHeader); u != "" {
			ctx = auth.WithIdentity(ctx, auth.Identity{UserID: u, DeviceID: "device", SessionID: req.Header().Get(sessionHeader)})
		}
		return next(ctx, req)
	}
})

// note is one NotifyUser call.
type note struct {
	user    string
	seq     uint64
	change  string
	session string
}

type recorder struct {
	mu    sync.Mutex
	notes []note
}

func (r *recorder) NotifyUser(_ context.Context, user string, ev *chatv1.UserEvent, senderSession string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, note{user, ev.GetSeq(), describe(ev.GetContactChanged()), senderSession})
}

// take returns and forgets the calls so far.
func (r *recorder) take() []note {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.notes
	r.notes = nil
	return n
}

type fixture struct {
	db     *pgxpool.Pool
	rdb    *redis.Client
	prefix string
	svc    *contact.Service
	notes  *recorder
	client contactv1connect.ContactServiceClient
	names  map[string]string // user id → name, for messages
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{db: pgtest.New(t), notes: &recorder{}, names: map[string]string{}}
	f.rdb, f.prefix = redistest.New(t)
	f.svc = contact.New(f.db, f.rdb, f.prefix, f.notes, testLogger(t))
	mux := http.NewServeMux()
	mux.Handle(contactv1connect.NewContactServiceHandler(f.svc, connect.WithInterceptors(testAuth)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only", http.StatusHTTPVersionNotSupported)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.client = contactv1connect.NewContactServiceClient(srv.Client(), srv.URL)
	return f
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// user inserts a user named name (ids are random, so ordering is too).
func (f *fixture) user(t testing.TB, name string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	if _, err := f.db.Exec(t.Context(), `INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')`, id, name); err != nil {
		t.Fatalf("insert user %s: %v", name, err)
	}
	f.names[id.String()] = name
	return id
}

// as returns a context for client calls made by user from session.
func as(user uuid.UUID, session string) context.Context {
	ctx, call := connect.NewClientContext(context.Background())
	call.RequestHeader().Set(userHeader, user.String())
	call.RequestHeader().Set(sessionHeader, session)
	return ctx
}

// direct returns a context for calling the handlers in process.
func direct(user uuid.UUID) context.Context {
	return auth.WithIdentity(context.Background(), auth.Identity{UserID: user.String(), DeviceID: "device"})
}

func describe(c *chatv1.ContactChanged) string {
	if c == nil {
		return "<not a contact change>"
	}
	return fmt.Sprintf("%s contact=%t blocked=%t", c.GetUserId(), c.GetContact(), c.GetBlocked())
}

// events returns user's stored user events as "seq: change" lines.
func (f *fixture) events(t *testing.T, user uuid.UUID) []string {
	t.Helper()
	rows, err := f.db.Query(t.Context(), `SELECT seq, body FROM user_events WHERE user_id = $1 ORDER BY seq`, user)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var seq int64
		var body []byte
		if err := r.Scan(&seq, &body); err != nil {
			return "", err
		}
		ev := &chatv1.UserEvent{}
		if err := proto.Unmarshal(body, ev); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d: %s", seq, describe(ev.GetContactChanged())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantCode(t *testing.T, what string, err error, code connect.Code, msg string) {
	t.Helper()
	if connect.CodeOf(err) != code || (msg != "" && !strings.Contains(err.Error(), msg)) {
		t.Fatalf("%s: error = %v, want %v containing %q", what, err, code, msg)
	}
}

func equal[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// TestUserEvents walks one user through every kind of change and no-op,
// over HTTP: each real change appends exactly one ContactChanged event with
// the relation as it now is, pushed once after commit to the caller's other
// sessions; a no-op or a failure appends and pushes nothing.
func TestUserEvents(t *testing.T) {
	f := newFixture(t)
	alice, bob, carol := f.user(t, "alice"), f.user(t, "bob"), f.user(t, "carol")
	ctx := as(alice, "sess-1")
	add := func(u uuid.UUID, alias string) func() error {
		return func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: u.String(), Alias: alias})
			return err
		}
	}
	remove := func(u uuid.UUID) func() error {
		return func() error {
			_, err := f.client.RemoveContact(ctx, &contactv1.RemoveContactRequest{UserId: u.String()})
			return err
		}
	}
	block := func(u uuid.UUID) func() error {
		return func() error {
			_, err := f.client.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: u.String()})
			return err
		}
	}
	unblock := func(u uuid.UUID) func() error {
		return func() error {
			_, err := f.client.UnblockUser(ctx, &contactv1.UnblockUserRequest{UserId: u.String()})
			return err
		}
	}
	steps := []struct {
		name string
		do   func() error
		code connect.Code // 0: success
		want string       // the appended change; "" for none
	}{
		{"add bob", add(bob, ""), 0, bob.String() + " contact=true blocked=false"},
		{"add bob again", add(bob, ""), 0, ""},
		{"set bob's alias", add(bob, "Bobby"), 0, bob.String() + " contact=true blocked=false"},
		{"same alias again", add(bob, "Bobby"), 0, ""},
		{"block bob, who stays a contact", block(bob), 0, bob.String() + " contact=true blocked=true"},
		{"block bob again", block(bob), 0, ""},
		{"remove bob, who stays blocked", remove(bob), 0, bob.String() + " contact=false blocked=true"},
		{"remove bob again", remove(bob), 0, ""},
		{"unblock bob", unblock(bob), 0, bob.String() + " contact=false blocked=false"},
		{"unblock bob again", unblock(bob), 0, ""},
		{"block carol, not a contact", block(carol), 0, carol.String() + " contact=false blocked=true"},
		{"add carol, who stays blocked", add(carol, "C"), 0, carol.String() + " contact=true blocked=true"},
		{"add self", add(alice, ""), connect.CodeInvalidArgument, ""},
		{"block unknown user", block(uuid.New()), connect.CodeNotFound, ""},
		{"alias too long", add(bob, strings.Repeat("x", 65)), connect.CodeInvalidArgument, ""},
	}
	var want []string
	for _, st := range steps {
		err := st.do()
		if st.code == 0 && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.code != 0 {
			wantCode(t, st.name, err, st.code, "")
		}
		var wantNotes []note
		if st.want != "" {
			want = append(want, fmt.Sprintf("%d: %s", len(want)+1, st.want))
			wantNotes = []note{{alice.String(), uint64(len(want)), st.want, "sess-1"}}
		}
		equal(t, st.name+": alice's events", f.events(t, alice), want)
		equal(t, st.name+": pushes", f.notes.take(), wantNotes)
	}
	// The other side is never told.
	equal(t, "bob's events", f.events(t, bob), nil)
	equal(t, "carol's events", f.events(t, carol), nil)
}

func TestContactsPaging(t *testing.T) {
	f := newFixture(t)
	alice := f.user(t, "alice")
	ctx := as(alice, "")
	var ids []string
	for i := range 7 {
		u := f.user(t, fmt.Sprintf("user%d", i))
		ids = append(ids, u.String())
		res, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: u.String(), Alias: fmt.Sprintf("Friend %d", i)})
		if err != nil {
			t.Fatalf("AddContact: %v", err)
		}
		if c := res.GetContact(); c.GetUserId() != u.String() || c.GetAlias() != fmt.Sprintf("Friend %d", i) || c.GetCreateTime() == nil {
			t.Fatalf("AddContact returned %v", c)
		}
	}
	slices.Sort(ids)

	for _, tc := range []struct {
		size  int32
		pages int
	}{{0, 1}, {1, 7}, {2, 4}, {3, 3}, {7, 1}, {8, 1}, {5000, 1}} {
		t.Run(fmt.Sprintf("page_size=%d", tc.size), func(t *testing.T) {
			var got []string
			pages, token := 0, ""
			for {
				res, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageSize: tc.size, PageToken: token})
				if err != nil {
					t.Fatalf("ListContacts: %v", err)
				}
				pages++
				for _, c := range res.GetContacts() {
					got = append(got, c.GetUserId())
				}
				if token = res.GetNextPageToken(); token == "" {
					break
				}
			}
			equal(t, "contacts", got, ids)
			if pages != tc.pages {
				t.Fatalf("%d pages, want %d", pages, tc.pages)
			}
		})
	}

	// Re-adding with a new alias updates it and keeps create_time.
	first, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := first.GetContacts()[0]
	res, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: c.GetUserId(), Alias: "Ünïcode 名前"})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetContact().GetAlias() != "Ünïcode 名前" || !res.GetContact().GetCreateTime().AsTime().Equal(c.GetCreateTime().AsTime()) {
		t.Fatalf("alias update returned %v, had %v", res.GetContact(), c)
	}
	again, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.GetContacts()[0].GetAlias(); got != "Ünïcode 名前" {
		t.Fatalf("listed alias %q after update", got)
	}
	// Clearing the alias.
	if _, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: c.GetUserId()}); err != nil {
		t.Fatal(err)
	}

	// A page token survives removals: the next page starts after the last
	// id seen.
	page, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:4] {
		if _, err := f.client.RemoveContact(ctx, &contactv1.RemoveContactRequest{UserId: id}); err != nil {
			t.Fatal(err)
		}
	}
	rest, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageToken: page.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range rest.GetContacts() {
		got = append(got, c.GetUserId())
	}
	equal(t, "after removals", got, ids[4:])

	// Others' lists are their own.
	other, err := f.client.ListContacts(as(uuid.MustParse(ids[0]), ""), &contactv1.ListContactsRequest{})
	if err != nil || len(other.GetContacts()) != 0 || other.GetNextPageToken() != "" {
		t.Fatalf("another user's list: %v, %v", other, err)
	}
}

func TestBlockedPaging(t *testing.T) {
	f := newFixture(t)
	alice := f.user(t, "alice")
	ctx := as(alice, "")
	var ids []string
	for i := range 5 {
		u := f.user(t, fmt.Sprintf("user%d", i))
		ids = append(ids, u.String())
		if _, err := f.client.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: u.String()}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(ids)
	var got []string
	token := ""
	for pages := 1; ; pages++ {
		res, err := f.client.ListBlockedUsers(ctx, &contactv1.ListBlockedUsersRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range res.GetBlockedUsers() {
			if b.GetCreateTime() == nil {
				t.Fatalf("no create_time in %v", b)
			}
			got = append(got, b.GetUserId())
		}
		if token = res.GetNextPageToken(); token == "" {
			if pages != 3 {
				t.Fatalf("%d pages, want 3", pages)
			}
			break
		}
		// A blocked-list token is not a contact-list token.
		_, err = f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageToken: token})
		wantCode(t, "contacts with a blocked-list token", err, connect.CodeInvalidArgument, "malformed page_token")
	}
	equal(t, "blocked", got, ids)
	// Blocking is not a contact.
	res, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{})
	if err != nil || len(res.GetContacts()) != 0 {
		t.Fatalf("contacts after blocks: %v, %v", res, err)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.user(t, "alice"), f.user(t, "bob")
	ctx := as(alice, "")
	ghost := uuid.New() // authenticated, but no account
	svc := f.svc
	cases := []struct {
		name string
		call func() error
		code connect.Code
		msg  string
	}{
		{"add: no user_id", func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{})
			return err
		}, connect.CodeInvalidArgument, "user_id is required"},
		{"add: malformed user_id", func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: "bob"})
			return err
		}, connect.CodeInvalidArgument, `user_id "bob" is not a valid id`},
		{"add: self", func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: alice.String()})
			return err
		}, connect.CodeInvalidArgument, "user_id is the caller"},
		{"add: unknown user", func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: ghost.String()})
			return err
		}, connect.CodeNotFound, "user " + ghost.String() + " not found"},
		{"add: alias of 65 characters", func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: bob.String(), Alias: strings.Repeat("é", 65)})
			return err
		}, connect.CodeInvalidArgument, "alias has 65 characters, at most 64"},
		{"add: alias with a newline", func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: bob.String(), Alias: "Bob\nSmith"})
			return err
		}, connect.CodeInvalidArgument, "alias must not contain control character U+000A"},
		{"add: alias with surrounding space", func() error {
			_, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: bob.String(), Alias: " Bob"})
			return err
		}, connect.CodeInvalidArgument, "white space"},
		// The protobuf codec refuses invalid UTF-8 on the wire; in process
		// the handler checks it.
		{"add: alias not UTF-8 (in process)", func() error {
			_, err := svc.AddContact(direct(alice), &contactv1.AddContactRequest{UserId: bob.String(), Alias: "\xff"})
			return err
		}, connect.CodeInvalidArgument, "alias is not valid UTF-8 at byte 0"},
		{"remove: self", func() error {
			_, err := f.client.RemoveContact(ctx, &contactv1.RemoveContactRequest{UserId: alice.String()})
			return err
		}, connect.CodeInvalidArgument, "user_id is the caller"},
		{"remove: unknown user", func() error {
			_, err := f.client.RemoveContact(ctx, &contactv1.RemoveContactRequest{UserId: ghost.String()})
			return err
		}, connect.CodeNotFound, "not found"},
		{"block: no user_id", func() error {
			_, err := f.client.BlockUser(ctx, &contactv1.BlockUserRequest{})
			return err
		}, connect.CodeInvalidArgument, "user_id is required"},
		{"block: self", func() error {
			_, err := f.client.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: alice.String()})
			return err
		}, connect.CodeInvalidArgument, "user_id is the caller"},
		{"block: unknown user", func() error {
			_, err := f.client.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: ghost.String()})
			return err
		}, connect.CodeNotFound, "not found"},
		{"unblock: self", func() error {
			_, err := f.client.UnblockUser(ctx, &contactv1.UnblockUserRequest{UserId: alice.String()})
			return err
		}, connect.CodeInvalidArgument, "user_id is the caller"},
		{"unblock: unknown user", func() error {
			_, err := f.client.UnblockUser(ctx, &contactv1.UnblockUserRequest{UserId: ghost.String()})
			return err
		}, connect.CodeNotFound, "not found"},
		{"list contacts: negative page_size", func() error {
			_, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageSize: -1})
			return err
		}, connect.CodeInvalidArgument, "page_size must not be negative"},
		{"list contacts: malformed token", func() error {
			_, err := f.client.ListContacts(ctx, &contactv1.ListContactsRequest{PageToken: "not a token"})
			return err
		}, connect.CodeInvalidArgument, "malformed page_token"},
		{"list blocked: negative page_size", func() error {
			_, err := f.client.ListBlockedUsers(ctx, &contactv1.ListBlockedUsersRequest{PageSize: -5})
			return err
		}, connect.CodeInvalidArgument, "page_size must not be negative"},
		{"list blocked: malformed token", func() error {
			_, err := f.client.ListBlockedUsers(ctx, &contactv1.ListBlockedUsersRequest{PageToken: "YWJj"})
			return err
		}, connect.CodeInvalidArgument, "malformed page_token"},
		{"no identity", func() error {
			_, err := f.client.ListContacts(context.Background(), &contactv1.ListContactsRequest{})
			return err
		}, connect.CodeUnauthenticated, "missing credentials"},
		{"identity not a user id", func() error {
			_, err := svc.BlockUser(auth.WithIdentity(context.Background(), auth.Identity{UserID: "alice"}),
				&contactv1.BlockUserRequest{UserId: bob.String()})
			return err
		}, connect.CodeUnauthenticated, "invalid user in credentials"},
		{"caller's account gone", func() error {
			_, err := f.client.AddContact(as(ghost, ""), &contactv1.AddContactRequest{UserId: bob.String()})
			return err
		}, connect.CodeUnauthenticated, "no longer exists"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.name, tc.call(), tc.code, tc.msg)
		})
	}
	// Nothing was stored or pushed, and 64 characters are fine.
	equal(t, "alice's events", f.events(t, alice), nil)
	equal(t, "pushes", f.notes.take(), nil)
	if _, err := f.client.AddContact(ctx, &contactv1.AddContactRequest{UserId: bob.String(), Alias: strings.Repeat("é", 64)}); err != nil {
		t.Fatalf("alias of 64 characters: %v", err)
	}
}

// blockers returns the Redis mirror's set of who blocked user, sorted.
func (f *fixture) blockers(t *testing.T, user string) []string {
	t.Helper()
	m, err := f.rdb.SMembers(t.Context(), presence.BlockersKey(f.prefix, user)).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// TestBlockHidesPresence checks the whole path: BlockUser writes the Redis
// mirror, and PresenceService with BlockVisibility then shows the blocker
// offline to the blocked user only, until UnblockUser.
func TestBlockHidesPresence(t *testing.T) {
	f := newFixture(t)
	alice, bob, carol := f.user(t, "alice"), f.user(t, "bob"), f.user(t, "carol")
	reg := presence.NewRedisRegistry(f.rdb, f.prefix, testLogger(t), presence.RegistryConfig{})
	svc := presence.NewService(reg, testLogger(t), presence.ServiceConfig{Visibility: presence.NewBlockVisibility(f.rdb, f.prefix)})
	if _, err := reg.RegisterSessions(t.Context(), &presencev1.RegisterSessionsRequest{Sessions: []*presencev1.Session{
		{SessionId: "s1", UserId: alice.String(), DeviceId: "d1", EdgeId: "edge-1"},
	}}); err != nil {
		t.Fatal(err)
	}
	status := func(viewer uuid.UUID) string {
		t.Helper()
		res, err := svc.GetPresence(direct(viewer), &presencev1.GetPresenceRequest{UserIds: []string{alice.String()}})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetPresences()[0].GetStatus().String()
	}
	const online, offline = "PRESENCE_STATUS_ONLINE", "PRESENCE_STATUS_OFFLINE"

	ctx := as(alice, "")
	for _, st := range []struct {
		name       string
		do         func() error
		blockers   []string
		bob, carol string // how each sees alice
		bobBlocked bool
	}{
		{"before", func() error { return nil }, nil, online, online, false},
		{"block", func() error {
			_, err := f.client.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: bob.String()})
			return err
		}, []string{alice.String()}, offline, online, true},
		{"block again", func() error {
			_, err := f.client.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: bob.String()})
			return err
		}, []string{alice.String()}, offline, online, true},
		{"unblock", func() error {
			_, err := f.client.UnblockUser(ctx, &contactv1.UnblockUserRequest{UserId: bob.String()})
			return err
		}, nil, online, online, false},
		{"unblock again", func() error {
			_, err := f.client.UnblockUser(ctx, &contactv1.UnblockUserRequest{UserId: bob.String()})
			return err
		}, nil, online, online, false},
	} {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		equal(t, st.name+": blockers of bob", f.blockers(t, bob.String()), st.blockers)
		if got := status(bob); got != st.bob {
			t.Fatalf("%s: bob sees alice %s, want %s", st.name, got, st.bob)
		}
		if got := status(carol); got != st.carol {
			t.Fatalf("%s: carol sees alice %s, want %s", st.name, got, st.carol)
		}
		blocked, err := contact.IsBlockedBy(t.Context(), f.db, bob, alice)
		if err != nil || blocked != st.bobBlocked {
			t.Fatalf("%s: IsBlockedBy(bob, alice) = %t, %v; want %t", st.name, blocked, err, st.bobBlocked)
		}
		// One-way: bob did not block alice.
		if blocked, err := contact.IsBlockedBy(t.Context(), f.db, alice, bob); err != nil || blocked {
			t.Fatalf("%s: IsBlockedBy(alice, bob) = %t, %v", st.name, blocked, err)
		}
	}
}

// TestMirrorFailure: when Redis is down the block is still saved (and
// synced to the caller's devices), the call fails with Unavailable, and
// calling again completes the mirror without a second event.
func TestMirrorFailure(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.user(t, "alice"), f.user(t, "bob")
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer broken.Close()
	down := contact.New(f.db, broken, f.prefix, f.notes, testLogger(t))

	_, err := down.BlockUser(direct(alice), &contactv1.BlockUserRequest{UserId: bob.String()})
	wantCode(t, "block with Redis down", err, connect.CodeUnavailable, "call BlockUser again")
	if blocked, err := contact.IsBlockedBy(t.Context(), f.db, bob, alice); err != nil || !blocked {
		t.Fatalf("IsBlockedBy after the failed mirror = %t, %v", blocked, err)
	}
	equal(t, "events", f.events(t, alice), []string{"1: " + bob.String() + " contact=false blocked=true"})
	equal(t, "blockers before the retry", f.blockers(t, bob.String()), nil)

	if _, err := f.client.BlockUser(as(alice, ""), &contactv1.BlockUserRequest{UserId: bob.String()}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	equal(t, "blockers after the retry", f.blockers(t, bob.String()), []string{alice.String()})
	equal(t, "events after the retry", f.events(t, alice), []string{"1: " + bob.String() + " contact=false blocked=true"})

	_, err = down.UnblockUser(direct(alice), &contactv1.UnblockUserRequest{UserId: bob.String()})
	wantCode(t, "unblock with Redis down", err, connect.CodeUnavailable, "call UnblockUser again")
	if _, err := f.svc.UnblockUser(direct(alice), &contactv1.UnblockUserRequest{UserId: bob.String()}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	equal(t, "blockers after unblocking", f.blockers(t, bob.String()), nil)
	if n := len(f.events(t, alice)); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}

// TestConcurrentChanges races several devices of one user blocking,
// unblocking, adding and removing the same user. Changes to one owner are
// serialized: the event stream stays gap-free, every event is a real change
// from the one before, the last event is the final state, and the Redis
// mirror matches Postgres.
func TestConcurrentChanges(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.user(t, "alice"), f.user(t, "bob")
	var wg sync.WaitGroup
	for d := range 8 {
		wg.Go(func() {
			ctx := direct(alice)
			for i := range 15 {
				var err error
				switch (d + i) % 4 {
				case 0:
					_, err = f.svc.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: bob.String()})
				case 1:
					_, err = f.svc.UnblockUser(ctx, &contactv1.UnblockUserRequest{UserId: bob.String()})
				case 2:
					_, err = f.svc.AddContact(ctx, &contactv1.AddContactRequest{UserId: bob.String()})
				case 3:
					_, err = f.svc.RemoveContact(ctx, &contactv1.RemoveContactRequest{UserId: bob.String()})
				}
				if err != nil {
					t.Errorf("device %d step %d: %v", d, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	evs := f.events(t, alice)
	prev := bob.String() + " contact=false blocked=false"
	for i, ev := range evs {
		seq, change, _ := strings.Cut(ev, ": ")
		if seq != fmt.Sprint(i+1) {
			t.Fatalf("event %d has seq %s", i+1, seq)
		}
		if change == prev {
			t.Fatalf("event %s repeats the state before it", ev)
		}
		prev = change
	}
	var isContact, isBlocked bool
	if err := f.db.QueryRow(t.Context(), `SELECT
		EXISTS (SELECT 1 FROM contacts WHERE owner_id = $1 AND user_id = $2),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`, alice, bob).Scan(&isContact, &isBlocked); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s contact=%t blocked=%t", bob, isContact, isBlocked); prev != want {
		t.Fatalf("last event %q, but the state is %q", prev, want)
	}
	var wantBlockers []string
	if isBlocked {
		wantBlockers = []string{alice.String()}
	}
	equal(t, "mirror", f.blockers(t, bob.String()), wantBlockers)
	if n := len(f.notes.take()); n != len(evs) {
		t.Fatalf("%d pushes for %d events", n, len(evs))
	}
	t.Logf("%d events", len(evs))
}

func TestIsBlockedByInTransaction(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.user(t, "alice"), f.user(t, "bob")
	if _, err := f.svc.BlockUser(direct(alice), &contactv1.BlockUserRequest{UserId: bob.String()}); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(t.Context(), f.db, func(tx pgx.Tx) error {
		for _, tc := range []struct {
			user, by uuid.UUID
			want     bool
		}{
			{bob, alice, true},
			{alice, bob, false},
			{bob, uuid.New(), false},
		} {
			got, err := contact.IsBlockedBy(t.Context(), tx, tc.user, tc.by)
			if err != nil {
				return err
			}
			if got != tc.want {
				t.Errorf("IsBlockedBy(%s, %s) = %t, want %t", f.names[tc.user.String()], f.names[tc.by.String()], got, tc.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestResyncBlockers loses and damages the Redis mirror, then rebuilds it:
// more blocks than one resync batch, stale members, garbage keys and
// members, and sets of users who no longer exist.
func TestResyncBlockers(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	// 60 users who all block each other (3540 blocks), through SQL.
	if _, err := f.db.Exec(ctx, `INSERT INTO users (id, username, password_hash)
		SELECT gen_random_uuid(), 'bulk' || i, 'x' FROM generate_series(1, 60) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(ctx, `INSERT INTO blocks (blocker_id, blocked_id)
		SELECT a.id, b.id FROM users a, users b WHERE a.id <> b.id`); err != nil {
		t.Fatal(err)
	}
	// Two more: alice blocks bob through the API, so the mirror has it; then
	// bob's account is deleted, which cascades in Postgres only.
	alice, bob, carol := f.user(t, "alice"), f.user(t, "bob"), f.user(t, "carol")
	if _, err := f.svc.BlockUser(direct(alice), &contactv1.BlockUserRequest{UserId: bob.String()}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(ctx, `DELETE FROM users WHERE id = $1`, bob); err != nil {
		t.Fatal(err)
	}
	// Damage: carol never blocked alice; garbage members and keys.
	for key, members := range map[string][]any{
		presence.BlockersKey(f.prefix, alice.String()):   {carol.String(), "not-a-user"},
		presence.BlockersKey(f.prefix, "not-a-user"):     {carol.String()},
		presence.BlockersKey(f.prefix, uuid.NewString()): {alice.String()},
	} {
		if err := f.rdb.SAdd(ctx, key, members...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Other keys under the prefix are not the mirror's business.
	if err := f.rdb.Set(ctx, f.prefix+"lastseen:{x}", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}

	if err := f.svc.ResyncBlockers(ctx); err != nil {
		t.Fatalf("ResyncBlockers: %v", err)
	}
	check := func(when string) {
		t.Helper()
		rows, err := f.db.Query(ctx, `SELECT blocked_id, array_agg(blocker_id::text ORDER BY blocker_id::text) FROM blocks GROUP BY blocked_id`)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{}
		for rows.Next() {
			var blocked uuid.UUID
			var blockers []string
			if err := rows.Scan(&blocked, &blockers); err != nil {
				t.Fatal(err)
			}
			want[presence.BlockersKey(f.prefix, blocked.String())] = blockers
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(want) != 60 {
			t.Fatalf("%d blocked users in Postgres, want 60", len(want))
		}
		keys, err := f.rdb.Keys(ctx, f.prefix+"blockers:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != len(want) {
			t.Fatalf("%s: %d blockers keys, want %d", when, len(keys), len(want))
		}
		for key, blockers := range want {
			got, err := f.rdb.SMembers(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			equal(t, when+": "+key, got, blockers)
		}
		if n, err := f.rdb.Exists(ctx, f.prefix+"lastseen:{x}").Result(); err != nil || n != 1 {
			t.Fatalf("%s: an unrelated key was touched: %d, %v", when, n, err)
		}
		// The other direction: whom each user blocked.
		blockedKeys, err := f.rdb.Keys(ctx, f.prefix+"blocked:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(blockedKeys) != 60 {
			t.Fatalf("%s: %d blocked keys, want 60", when, len(blockedKeys))
		}
		if n, err := f.rdb.SCard(ctx, blockedKeys[0]).Result(); err != nil || n != 59 {
			t.Fatalf("%s: %s holds %d users, want 59", when, blockedKeys[0], n)
		}
		if n, _ := f.rdb.Exists(ctx, presence.BlockedKey(f.prefix, alice.String())).Result(); n != 0 {
			t.Fatalf("%s: alice's blocked set survived bob's deletion", when)
		}
	}
	check("after damage")

	// A total loss (a flush), then resync.
	keys, err := f.rdb.Keys(ctx, f.prefix+"block*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ResyncBlockers(ctx); err != nil {
		t.Fatalf("ResyncBlockers: %v", err)
	}
	check("after loss")
	// Idempotent.
	if err := f.svc.ResyncBlockers(ctx); err != nil {
		t.Fatalf("ResyncBlockers: %v", err)
	}
	check("again")
}
