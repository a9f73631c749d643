package chat_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/sqlitetest"
	"github.com/wagglechat/waggle/internal/storetest"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/services/chat"
	"github.com/wagglechat/waggle/sqlite"
)

// fixture is a chat service on a fresh store of its own. db is the
// store's database, where tests set up and inspect rows directly.
type fixture struct {
	t       *testing.T
	backend string
	db      testDB
	store   chat.Store
	svc     *chat.Service
}

// testDB is a store's database as tests set up and inspect it, in the SQL
// every backend speaks ($n parameters, ids as uuids or their strings).
type testDB interface {
	exec(ctx context.Context, query string, args ...any) error
	queryRow(ctx context.Context, query string, args ...any) scanner
	// now is the store's clock, which stamps what commits.
	now(ctx context.Context) (time.Time, error)
	// time is t as a parameter for a time column.
	time(t time.Time) any
}

type scanner interface{ Scan(dest ...any) error }

// pgDB is a Postgres store's database.
type pgDB struct{ pool *pgxpool.Pool }

func (d pgDB) exec(ctx context.Context, query string, args ...any) error {
	_, err := d.pool.Exec(ctx, query, args...)
	return err
}

func (d pgDB) queryRow(ctx context.Context, query string, args ...any) scanner {
	return d.pool.QueryRow(ctx, query, args...)
}

func (d pgDB) now(ctx context.Context) (t time.Time, err error) {
	return t, d.pool.QueryRow(ctx, `SELECT now()`).Scan(&t)
}

func (pgDB) time(t time.Time) any { return t }

// sqliteDB is an embedded store's database.
type sqliteDB struct{ db *sqlite.DB }

func (d sqliteDB) exec(ctx context.Context, query string, args ...any) error {
	return d.db.Write(ctx, func(tx *sqlite.Tx) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	})
}

func (d sqliteDB) queryRow(ctx context.Context, query string, args ...any) scanner {
	return scanFunc(func(dest ...any) error {
		return d.db.Read(ctx, func(tx *sql.Tx) error { return tx.QueryRowContext(ctx, query, args...).Scan(dest...) })
	})
}

// The embedded store takes its times from the process's clock.
func (sqliteDB) now(context.Context) (time.Time, error) { return time.Now(), nil }

func (sqliteDB) time(t time.Time) any { return t.UnixMicro() }

type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// backend is a Store implementation the tests run on.
type backend struct {
	name string
	// open returns a fresh, migrated store and its database.
	open func(t *testing.T) (chat.Store, testDB)
	// oneWriter: a transaction left open stops every other write until it
	// ends (SQLite), so nothing commits past it.
	oneWriter bool
}

// backends are the Store implementations; forEachStore runs a test on each.
var backends = []backend{
	{name: "postgres", open: func(t *testing.T) (chat.Store, testDB) {
		db := pgtest.New(t)
		return postgres.NewChatStore(db), pgDB{db}
	}},
	{name: "sqlite", oneWriter: true, open: func(t *testing.T) (chat.Store, testDB) {
		db := sqlitetest.New(t)
		return sqlite.NewChatStore(db), sqliteDB{db}
	}},
}

// testBackend holds the backend each forEachStore subtest runs on.
var testBackend sync.Map // *testing.T -> backend

// forEachStore runs test once per backend (storetest.Run: as a subtest
// named after it, or on the one WAGGLE_TEST_STORE names); the fixtures it
// makes are on that backend.
func forEachStore(t *testing.T, test func(t *testing.T)) {
	byName := map[string]func(testing.TB) backend{}
	for _, b := range backends {
		byName[b.name] = func(testing.TB) backend { return b }
	}
	storetest.Run(t, byName, func(t *testing.T, b backend) {
		testBackend.Store(t, b)
		t.Cleanup(func() { testBackend.Delete(t) })
		test(t)
	})
}

// backendOf is the backend t runs on: outside forEachStore, in tests of
// what only Postgres does (its lock waits, its writes), the first one,
// Postgres.
func backendOf(t *testing.T) backend {
	if v, ok := testBackend.Load(t); ok {
		return v.(backend)
	}
	return backends[0]
}

// newStore opens a store of the backend t runs on.
func newStore(t *testing.T) (chat.Store, testDB) {
	t.Helper()
	return backendOf(t).open(t)
}

// postgres is the fixture's Postgres database, for tests of what only
// Postgres does.
func (f *fixture) postgres() *pgxpool.Pool {
	f.t.Helper()
	db, ok := f.db.(pgDB)
	if !ok {
		f.t.Fatalf("a Postgres test runs on %s", f.backend)
	}
	return db.pool
}

func testLog() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, db := newStore(t)
	return &fixture{t: t, backend: backendOf(t).name, db: db, store: store, svc: chat.New(chat.Config{}, store, nil, testLog())}
}

// user inserts a user row (accounts are the account service's business) and
// returns a context acting as that user.
func (f *fixture) user(name string) (context.Context, string) {
	f.t.Helper()
	id := uuid.New()
	if err := f.db.exec(context.Background(), `INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')`,
		id, name+"-"+id.String()[:8]); err != nil {
		f.t.Fatal(err)
	}
	return auth.WithIdentity(context.Background(), auth.Identity{UserID: id.String(), DeviceID: uuid.NewString()}), id.String()
}

func (f *fixture) group(ctx context.Context, members ...string) string {
	f.t.Helper()
	res, err := f.svc.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: "g", MemberUserIds: members})
	if err != nil {
		f.t.Fatal(err)
	}
	return res.GetConversation().GetConversationId()
}

func (f *fixture) send(ctx context.Context, conv, text string) *chatv1.Message {
	f.t.Helper()
	res, err := f.svc.SendMessage(ctx, textReq(conv, uuid.NewString(), text))
	if err != nil {
		f.t.Fatalf("send %q: %v", text, err)
	}
	return res.GetMessage()
}

// errRollback ends a transaction openTx kept open without committing it.
var errRollback = errors.New("rolled back")

// openTx runs fn in a transaction of the store and keeps the transaction
// open, holding its locks, until commit is called; a test that ends first
// rolls it back.
func (f *fixture) openTx(fn func(chat.Tx) error) (commit func()) {
	f.t.Helper()
	ready, release, done := make(chan error, 1), make(chan bool), make(chan error, 1)
	go func() {
		done <- f.store.InTx(context.Background(), func(tx chat.Tx) error {
			err := fn(tx)
			ready <- err
			if err != nil {
				return err
			}
			if !<-release {
				return errRollback
			}
			return nil
		})
	}()
	if err := <-ready; err != nil {
		f.t.Fatal(err)
	}
	var once sync.Once
	f.t.Cleanup(func() { once.Do(func() { release <- false; <-done }) })
	return func() {
		f.t.Helper()
		once.Do(func() {
			release <- true
			if err := <-done; err != nil {
				f.t.Fatal(err)
			}
		})
	}
}

func textReq(conv, clientID, text string) *chatv1.SendMessageRequest {
	return &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: clientID,
		Content: &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: text}}}}
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}

func TestDirectConversationIsFoundAgain(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		bob, bobID := f.user("bob")

		first, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: bobID})
		if err != nil {
			t.Fatal(err)
		}
		if !first.GetCreated() || first.GetConversation().GetPeerUserId() != bobID {
			t.Fatalf("first call: %v", first)
		}
		again, err := f.svc.CreateDirectConversation(bob, &chatv1.CreateDirectConversationRequest{PeerUserId: aliceID})
		if err != nil {
			t.Fatal(err)
		}
		if again.GetCreated() || again.GetConversation().GetConversationId() != first.GetConversation().GetConversationId() {
			t.Fatalf("second call from the other side: %v, want the same conversation", again)
		}

		_, err = f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: aliceID})
		wantCode(t, err, connect.CodeInvalidArgument)
		_, err = f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: uuid.NewString()})
		wantCode(t, err, connect.CodeNotFound)
	})
}

func TestSendIsIdempotentPerClientMsgID(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		_, bobID := f.user("bob")
		conv := f.group(alice, bobID)

		first, err := f.svc.SendMessage(alice, textReq(conv, "c-1", "hello"))
		if err != nil {
			t.Fatal(err)
		}
		retry, err := f.svc.SendMessage(alice, textReq(conv, "c-1", "hello again"))
		if err != nil {
			t.Fatal(err)
		}
		if !retry.GetDuplicate() || retry.GetMessage().GetMessageId() != first.GetMessage().GetMessageId() ||
			retry.GetMessage().GetSeq() != first.GetMessage().GetSeq() || retry.GetMessage().GetContent().GetText().GetBody() != "hello" {
			t.Fatalf("retry = %v, want the original %v", retry, first)
		}

		// Concurrent retries of one client_msg_id store exactly one message.
		var wg sync.WaitGroup
		ids := make([]string, 8)
		for i := range ids {
			wg.Go(func() {
				res, err := f.svc.SendMessage(alice, textReq(conv, "c-2", "race"))
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = res.GetMessage().GetMessageId()
			})
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("concurrent retries produced different messages: %v", ids)
			}
		}
		var n int
		if err := f.db.queryRow(context.Background(), `SELECT count(*) FROM events WHERE kind = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Fatalf("%d messages stored, want 2", n)
		}
	})
}

func TestSendRejectsBadInputAndStoresNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		conv := f.group(alice)
		text := func(s string) *chatv1.MessageContent {
			return &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: s}}}
		}
		tests := []struct {
			name string
			req  *chatv1.SendMessageRequest
			code connect.Code
		}{
			{"no content", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: "a"}, connect.CodeInvalidArgument},
			{"empty text", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: "a", Content: text("")}, connect.CodeInvalidArgument},
			{"blank text", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: "a", Content: text(" \n\t")}, connect.CodeInvalidArgument},
			{"too long", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: "a", Content: text(strings.Repeat("é", 4097))}, connect.CodeInvalidArgument},
			{"custom too big", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: "a", Content: &chatv1.MessageContent{
				Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{Type: "blob", Data: make([]byte, 17<<10)}}}}, connect.CodeInvalidArgument},
			{"custom without type", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: "a", Content: &chatv1.MessageContent{
				Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{}}}}, connect.CodeInvalidArgument},
			{"bad mention", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: "a", Content: &chatv1.MessageContent{
				Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: "hi", MentionUserIds: []string{"bob"}}}}}, connect.CodeInvalidArgument},
			{"no client id", &chatv1.SendMessageRequest{ConversationId: conv, Content: text("hi")}, connect.CodeInvalidArgument},
			{"client id too long", &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: strings.Repeat("x", 65), Content: text("hi")}, connect.CodeInvalidArgument},
			{"bad conversation id", &chatv1.SendMessageRequest{ConversationId: "nope", ClientMsgId: "a", Content: text("hi")}, connect.CodeInvalidArgument},
			{"unknown conversation", &chatv1.SendMessageRequest{ConversationId: uuid.NewString(), ClientMsgId: "a", Content: text("hi")}, connect.CodeNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := f.svc.SendMessage(alice, tt.req)
				wantCode(t, err, tt.code)
			})
		}
		var n int
		if err := f.db.queryRow(context.Background(), `SELECT count(*) FROM events WHERE kind = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d messages stored after bad sends", n)
		}
	})
}

func TestNonMembersCannotReadOrWrite(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		_, bobID := f.user("bob")
		mallory, _ := f.user("mallory")
		conv := f.group(alice, bobID)
		f.send(alice, conv, "secret")

		_, err := f.svc.SendMessage(mallory, textReq(conv, "m", "let me in"))
		wantCode(t, err, connect.CodeNotFound)
		_, err = f.svc.ListMessages(mallory, &chatv1.ListMessagesRequest{ConversationId: conv})
		wantCode(t, err, connect.CodeNotFound)
		_, err = f.svc.GetConversation(mallory, &chatv1.GetConversationRequest{ConversationId: conv})
		wantCode(t, err, connect.CodeNotFound)
		_, err = f.svc.ListMembers(mallory, &chatv1.ListMembersRequest{ConversationId: conv})
		wantCode(t, err, connect.CodeNotFound)
		res, err := f.svc.Sync(mallory, &chatv1.SyncRequest{})
		if err != nil || len(res.GetEvents()) != 0 {
			t.Fatalf("mallory's sync = %v, %v; want nothing", res, err)
		}
	})
}

func TestConcurrentSendsGetGapFreeSeqs(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		const workers, each = 8, 25
		var wg sync.WaitGroup
		for w := range workers {
			ctx := alice
			if w%2 == 1 {
				ctx = bob
			}
			wg.Go(func() {
				for i := range each {
					if _, err := f.svc.SendMessage(ctx, textReq(conv, fmt.Sprintf("%d-%d", w, i), "x")); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		var n, lo, hi int64
		if err := f.db.queryRow(context.Background(), `SELECT count(*), min(seq), max(seq) FROM events WHERE conversation_id = $1`, conv).Scan(&n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != workers*each+1 || lo != 1 || hi != n {
			t.Fatalf("events: count %d, seqs %d..%d; want %d contiguous from 1", n, lo, hi, workers*each+1)
		}
	})
}

func TestHistoryPagesWithinMembership(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		carol, carolID := f.user("carol")
		conv := f.group(alice) // seq 1: created
		for i := 1; i <= 5; i++ {
			f.send(alice, conv, fmt.Sprint("before ", i)) // seqs 2..6
		}
		if _, err := f.svc.AddMembers(alice, &chatv1.AddMembersRequest{ConversationId: conv, UserIds: []string{carolID}}); err != nil {
			t.Fatal(err) // seq 7
		}
		for i := 1; i <= 25; i++ {
			f.send(alice, conv, fmt.Sprint("after ", i)) // seqs 8..32
		}

		page := func(ctx context.Context, req *chatv1.ListMessagesRequest) []uint64 {
			t.Helper()
			var seqs []uint64
			for {
				res, err := f.svc.ListMessages(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range res.GetMessages() {
					seqs = append(seqs, m.GetSeq())
				}
				if res.GetNextPageToken() == "" {
					return seqs
				}
				req.PageToken = res.GetNextPageToken()
			}
		}
		// seqRange lists message seqs from..to; seq 7 is the MembersAdded event.
		seqRange := func(from, to int) []uint64 {
			var s []uint64
			step := 1
			if from > to {
				step = -1
			}
			for i := from; ; i += step {
				if i != 7 {
					s = append(s, uint64(i))
				}
				if i == to {
					return s
				}
			}
		}
		check := func(name string, got, want []uint64) {
			t.Helper()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: got %v, want %v", name, got, want)
			}
		}
		check("alice backward", page(alice, &chatv1.ListMessagesRequest{ConversationId: conv, PageSize: 7}), seqRange(32, 2))
		check("alice forward", page(alice, &chatv1.ListMessagesRequest{ConversationId: conv, Direction: chatv1.Direction_DIRECTION_FORWARD, PageSize: 4}), seqRange(2, 32))
		check("carol sees from her join", page(carol, &chatv1.ListMessagesRequest{ConversationId: conv, PageSize: 10}), seqRange(32, 8))
		check("backward from a seq", page(alice, &chatv1.ListMessagesRequest{ConversationId: conv, StartSeq: 10, PageSize: 3}), seqRange(10, 2))

		if _, err := f.svc.RemoveMember(alice, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: carolID}); err != nil {
			t.Fatal(err) // seq 33
		}
		f.send(alice, conv, "after carol left") // seq 34
		check("removed carol keeps history to her removal", page(carol, &chatv1.ListMessagesRequest{ConversationId: conv, PageSize: 50}), seqRange(32, 8))

		_, err := f.svc.ListMessages(alice, &chatv1.ListMessagesRequest{ConversationId: conv, PageToken: "garbage"})
		wantCode(t, err, connect.CodeInvalidArgument)
		_, err = f.svc.ListMessages(alice, &chatv1.ListMessagesRequest{ConversationId: conv, PageSize: -1})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}

func TestMembershipRules(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		owner, ownerID := f.user("owner")
		admin, adminID := f.user("admin")
		member, memberID := f.user("member")
		_, outsiderID := f.user("outsider")
		conv := f.group(owner, adminID, memberID)
		if _, err := f.svc.SetMemberRole(owner, &chatv1.SetMemberRoleRequest{ConversationId: conv, UserId: adminID, Role: chatv1.MemberRole_MEMBER_ROLE_ADMIN}); err != nil {
			t.Fatal(err)
		}
		lastSeq := func() uint64 {
			res, err := f.svc.GetConversation(owner, &chatv1.GetConversationRequest{ConversationId: conv})
			if err != nil {
				t.Fatal(err)
			}
			return res.GetConversation().GetLastSeq()
		}
		refused := []struct {
			name string
			call func() error
			code connect.Code
		}{
			{"member adds", func() error {
				_, err := f.svc.AddMembers(member, &chatv1.AddMembersRequest{ConversationId: conv, UserIds: []string{outsiderID}})
				return err
			}, connect.CodePermissionDenied},
			{"member removes", func() error {
				_, err := f.svc.RemoveMember(member, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: adminID})
				return err
			}, connect.CodePermissionDenied},
			{"admin removes owner", func() error {
				_, err := f.svc.RemoveMember(admin, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: ownerID})
				return err
			}, connect.CodePermissionDenied},
			{"admin sets roles", func() error {
				_, err := f.svc.SetMemberRole(admin, &chatv1.SetMemberRoleRequest{ConversationId: conv, UserId: memberID, Role: chatv1.MemberRole_MEMBER_ROLE_ADMIN})
				return err
			}, connect.CodePermissionDenied},
			{"member renames", func() error {
				_, err := f.svc.UpdateConversation(member, &chatv1.UpdateConversationRequest{ConversationId: conv, Title: "mine"})
				return err
			}, connect.CodePermissionDenied},
			{"owner leaves first", func() error {
				_, err := f.svc.LeaveConversation(owner, &chatv1.LeaveConversationRequest{ConversationId: conv})
				return err
			}, connect.CodeFailedPrecondition},
			{"add unknown user", func() error {
				_, err := f.svc.AddMembers(owner, &chatv1.AddMembersRequest{ConversationId: conv, UserIds: []string{uuid.NewString()}})
				return err
			}, connect.CodeNotFound},
			{"remove non-member", func() error {
				_, err := f.svc.RemoveMember(owner, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: outsiderID})
				return err
			}, connect.CodeNotFound},
		}
		before := lastSeq()
		for _, tt := range refused {
			t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), tt.code) })
		}
		if after := lastSeq(); after != before {
			t.Fatalf("refused actions changed the sequence: %d -> %d", before, after)
		}

		if _, err := f.svc.AddMembers(admin, &chatv1.AddMembersRequest{ConversationId: conv, UserIds: []string{outsiderID, memberID}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.RemoveMember(admin, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: outsiderID}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.TransferOwnership(owner, &chatv1.TransferOwnershipRequest{ConversationId: conv, NewOwnerUserId: memberID}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.LeaveConversation(owner, &chatv1.LeaveConversationRequest{ConversationId: conv}); err != nil {
			t.Fatal(err)
		}
		_, err := f.svc.SendMessage(owner, textReq(conv, "x", "still here?"))
		wantCode(t, err, connect.CodeNotFound)
		res, err := f.svc.GetConversation(member, &chatv1.GetConversationRequest{ConversationId: conv})
		if err != nil {
			t.Fatal(err)
		}
		if c := res.GetConversation(); c.GetMemberCount() != 2 || c.GetSelf().GetRole() != chatv1.MemberRole_MEMBER_ROLE_OWNER {
			t.Fatalf("after transfer and leave: %v", c)
		}
	})
}

// A send waiting on the conversation's lock while its sender is removed
// must be refused once it gets the lock: the membership check reads after
// the lock, not before.
func TestSendWaitingOnARemovalIsRefused(t *testing.T) {
	f := newFixture(t)
	alice, aliceID := f.user("alice")
	bob, bobID := f.user("bob")
	conv := f.group(alice, bobID)
	ctx := context.Background()
	commit := f.openTx(func(tx chat.Tx) error {
		_, err := chat.RemoveMember(ctx, tx, uuid.MustParse(conv), uuid.MustParse(aliceID), "", uuid.MustParse(bobID), chatv1.RemovalReason_REMOVAL_REASON_REMOVED)
		return err
	})
	done := make(chan error, 1)
	go func() {
		_, err := f.svc.SendMessage(bob, textReq(conv, "late", "sent while being removed"))
		done <- err
	}()
	// The send now waits for the removal's lock.
	waitForLockWaiter(t, f)
	commit()
	wantCode(t, <-done, connect.CodeNotFound)
	var n int
	if err := f.db.queryRow(ctx, `SELECT count(*) FROM events WHERE conversation_id = $1 AND kind = 1`, conv).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d messages stored from a removed member", n)
	}
}

// waitForLockWaiter waits until some backend of the test database waits on
// a lock.
func waitForLockWaiter(t *testing.T, f *fixture) {
	t.Helper()
	for range 500 {
		var waiting bool
		f.postgres().QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		if waiting {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no statement ever waited on the lock")
}
