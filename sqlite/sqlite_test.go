package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/sqlite"
)

func open(t *testing.T, dir string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// query runs one query that returns a single value on the read pool.
func query[T any](t *testing.T, db *sqlite.DB, q string, args ...any) T {
	t.Helper()
	var v T
	err := db.Read(t.Context(), func(tx *sql.Tx) error { return tx.QueryRow(q, args...).Scan(&v) })
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func write(t *testing.T, db *sqlite.DB, stmts ...string) error {
	t.Helper()
	return db.Write(t.Context(), func(tx *sqlite.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(s); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestOpenMigratesOnceAndReopens(t *testing.T) {
	dir := t.TempDir() + "/data" // Open creates it
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx := t.Context()
	db, err := sqlite.Open(ctx, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "migration applied"); n != 1 {
		t.Fatalf("first open applied %d migrations, want 1:\n%s", n, logs.String())
	}
	want := []string{"blocks", "change_counter", "contacts", "conversations", "deliveries", "devices", "events",
		"goose_db_version", "hidden_messages", "members", "reactions", "user_events", "user_streams", "users"}
	tables := func(db *sqlite.DB) []string {
		var got []string
		err := db.Read(ctx, func(tx *sql.Tx) error {
			rows, err := tx.Query(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					return err
				}
				got = append(got, n)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := tables(db); !slices.Equal(got, want) {
		t.Fatalf("tables %v, want %v", got, want)
	}
	if err := write(t, db, `INSERT INTO user_streams (user_id, last_seq) VALUES ('kept', 1)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	logs.Reset()
	db = open(t, dir)
	if logs.Len() != 0 {
		t.Fatalf("reopen applied migrations:\n%s", logs.String())
	}
	if got := tables(db); !slices.Equal(got, want) {
		t.Fatalf("after reopen: tables %v, want %v", got, want)
	}
	if n := query[int](t, db, `SELECT count(*) FROM user_streams WHERE user_id = 'kept'`); n != 1 {
		t.Fatal("row written before reopening is gone")
	}
}

func TestOpenErrors(t *testing.T) {
	for _, dir := range []string{
		"/proc/waggle-data",    // cannot be created
		t.TempDir() + "/a?b=c", // would be parsed as DSN parameters
	} {
		if db, err := sqlite.Open(t.Context(), dir, slog.New(slog.DiscardHandler)); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", dir)
		}
	}
}

// The settings are per connection (journal_mode is in the file), so both
// kinds of connection are checked.
func TestPragmas(t *testing.T) {
	db := open(t, t.TempDir())
	pragmas := []struct {
		name        string
		read, write string
	}{
		{"journal_mode", "wal", "wal"},
		{"synchronous", "2", "2"}, // FULL
		{"foreign_keys", "1", "1"},
		{"busy_timeout", "5000", "5000"},
		{"query_only", "1", "0"},
	}
	for _, p := range pragmas {
		t.Run(p.name, func(t *testing.T) {
			var read, write string
			if err := db.Read(t.Context(), func(tx *sql.Tx) error {
				return tx.QueryRow("PRAGMA " + p.name).Scan(&read)
			}); err != nil {
				t.Fatal(err)
			}
			if err := db.Write(t.Context(), func(tx *sqlite.Tx) error {
				return tx.QueryRow("PRAGMA " + p.name).Scan(&write)
			}); err != nil {
				t.Fatal(err)
			}
			if read != p.read || write != p.write {
				t.Errorf("read connection %q, write connection %q; want %q, %q", read, write, p.read, p.write)
			}
		})
	}
}

func TestReadRefusesWrites(t *testing.T) {
	db := open(t, t.TempDir())
	err := db.Read(t.Context(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO user_streams (user_id, last_seq) VALUES ('x', 1)`)
		return err
	})
	if err == nil {
		t.Fatal("insert through Read succeeded")
	}
}

// Many read-then-write transactions at once: none fails with SQLITE_BUSY,
// none loses an update, and each gets its own change sequence, in commit
// order. Readers run meanwhile.
func TestConcurrentWritersSerialise(t *testing.T) {
	db := open(t, t.TempDir())
	ctx := t.Context()
	conv := uuid.New()
	if err := db.Write(ctx, func(tx *sqlite.Tx) error {
		cs, err := tx.ChangeSeq(ctx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO conversations (id, type, change_seq) VALUES (?, 1, ?)`, conv, cs)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	const writers, each = 16, 25
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		commits []int64 // change sequences, in the order the transactions ran
		errs    = make(chan error, writers*each+writers)
		stop    = make(chan struct{})
	)
	for range writers {
		wg.Go(func() {
			for range each {
				err := db.Write(ctx, func(tx *sqlite.Tx) error {
					var last int64
					if err := tx.QueryRow(`SELECT last_seq FROM conversations WHERE id = ?`, conv).Scan(&last); err != nil {
						return err
					}
					cs, err := tx.ChangeSeq(ctx)
					if err != nil {
						return err
					}
					// Transactions run one at a time, so this is commit order
					// (none fails here).
					mu.Lock()
					commits = append(commits, cs)
					mu.Unlock()
					_, err = tx.Exec(`UPDATE conversations SET last_seq = ?, change_seq = ? WHERE id = ?`, last+1, cs, conv)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := db.Read(ctx, func(tx *sql.Tx) error {
					var n int64
					return tx.QueryRow(`SELECT last_seq FROM conversations WHERE id = ?`, conv).Scan(&n)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := query[int64](t, db, `SELECT last_seq FROM conversations WHERE id = ?`, conv); got != writers*each {
		t.Fatalf("last_seq %d after %d increments", got, writers*each)
	}
	// The setup took change sequence 1; the writers took 2..N+1 in the order
	// they ran.
	for i, cs := range commits {
		if cs != int64(i+2) {
			t.Fatalf("change sequences %v are not 2..%d in order", commits, writers*each+1)
		}
	}
}

func TestChangeSeq(t *testing.T) {
	db := open(t, t.TempDir())
	ctx := t.Context()
	next := func(fail bool) (int64, error) {
		var got int64
		err := db.Write(ctx, func(tx *sqlite.Tx) error {
			a, err := tx.ChangeSeq(ctx)
			if err != nil {
				return err
			}
			b, err := tx.ChangeSeq(ctx)
			if err != nil {
				return err
			}
			if a != b {
				return fmt.Errorf("one transaction got change sequences %d and %d", a, b)
			}
			got = a
			if fail {
				return errors.New("roll back")
			}
			return nil
		})
		return got, err
	}
	steps := []struct {
		fail bool
		want int64
	}{
		{false, 1},
		{false, 2},
		{true, 3},  // rolled back: never visible, so 3 is taken again
		{false, 3}, //
		{false, 4},
	}
	for i, s := range steps {
		got, err := next(s.fail)
		if (err != nil) != s.fail {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != s.want {
			t.Fatalf("step %d: change sequence %d, want %d", i, got, s.want)
		}
	}
}

func TestConstraints(t *testing.T) {
	u1, u2 := uuid.NewString(), uuid.NewString()
	user := func(id, name string) string {
		return fmt.Sprintf(`INSERT INTO users (id, username, password_hash) VALUES ('%s', '%s', 'h')`, id, name)
	}
	conv := func(id string) string {
		return fmt.Sprintf(`INSERT INTO conversations (id, type, change_seq) VALUES ('%s', 2, 1)`, id)
	}
	event := func(conv string, seq int, actor, clientMsgID string) string {
		cm := "NULL"
		if clientMsgID != "" {
			cm = "'" + clientMsgID + "'"
		}
		return fmt.Sprintf(`INSERT INTO events (conversation_id, seq, kind, actor_id, change_seq, body, client_msg_id)
			VALUES ('%s', %d, 1, '%s', 1, x'', %s)`, conv, seq, actor, cm)
	}
	c := uuid.NewString()
	tests := []struct {
		name  string
		stmts []string
		ok    bool
		check string // a count that must be 0 afterwards, if set
	}{
		{"username ok", []string{user(u1, "al.ice_-9")}, true, ""},
		{"username shortest", []string{user(u1, "abc")}, true, ""},
		{"username longest", []string{user(u1, strings.Repeat("a", 32))}, true, ""},
		{"username too short", []string{user(u1, "ab")}, false, ""},
		{"username too long", []string{user(u1, strings.Repeat("a", 33))}, false, ""},
		{"username upper case", []string{user(u1, "Alice")}, false, ""},
		{"username space", []string{user(u1, "al ice")}, false, ""},
		{"username non-ascii", []string{user(u1, "alicé")}, false, ""},
		{"username taken", []string{user(u1, "alice"), user(u2, "alice")}, false, ""},
		{"strict types", []string{`INSERT INTO conversations (id, type, change_seq) VALUES ('x', 'direct', 1)`}, false, ""},
		{"muted is boolean", []string{conv(c), fmt.Sprintf(`INSERT INTO members (conversation_id, user_id, role, joined_seq, muted) VALUES ('%s', '%s', 1, 0, 2)`, c, u1)}, false, ""},
		{"member of no conversation", []string{fmt.Sprintf(`INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES ('%s', '%s', 1, 0)`, c, u1)}, false, ""},
		{"client_msg_id repeated", []string{conv(c), event(c, 1, u1, "m1"), event(c, 2, u1, "m1")}, false, ""},
		{"client_msg_id of another sender", []string{conv(c), event(c, 1, u1, "m1"), event(c, 2, u2, "m1")}, true, ""},
		{"client_msg_id absent twice", []string{conv(c), event(c, 1, u1, ""), event(c, 2, u1, "")}, true, ""},
		{"alias of 64 characters", []string{user(u1, "alice"), user(u2, "bob"),
			fmt.Sprintf(`INSERT INTO contacts (owner_id, user_id, alias) VALUES ('%s', '%s', '%s')`, u1, u2, strings.Repeat("é", 64))}, true, ""},
		{"alias of 65 characters", []string{user(u1, "alice"), user(u2, "bob"),
			fmt.Sprintf(`INSERT INTO contacts (owner_id, user_id, alias) VALUES ('%s', '%s', '%s')`, u1, u2, strings.Repeat("a", 65))}, false, ""},
		{"self contact", []string{user(u1, "alice"), fmt.Sprintf(`INSERT INTO contacts (owner_id, user_id) VALUES ('%s', '%s')`, u1, u1)}, false, ""},
		{"deleting a conversation cascades", []string{
			conv(c), event(c, 1, u1, "m1"),
			fmt.Sprintf(`INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES ('%s', '%s', 1, 0)`, c, u1),
			fmt.Sprintf(`INSERT INTO reactions (conversation_id, message_seq, emoji, user_id) VALUES ('%s', 1, '👍', '%s')`, c, u1),
			fmt.Sprintf(`INSERT INTO hidden_messages (user_id, conversation_id, message_seq) VALUES ('%s', '%s', 1)`, u1, c),
			fmt.Sprintf(`INSERT INTO deliveries (conversation_id, user_id, device_id, delivered_seq) VALUES ('%s', '%s', '%s', 1)`, c, u1, u2),
			fmt.Sprintf(`DELETE FROM conversations WHERE id = '%s'`, c),
		}, true, `SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM members) + (SELECT count(*) FROM reactions)
			+ (SELECT count(*) FROM hidden_messages) + (SELECT count(*) FROM deliveries)`},
		{"deleting a user cascades", []string{
			user(u1, "alice"), user(u2, "bob"),
			fmt.Sprintf(`INSERT INTO devices (id, user_id, refresh_hash, refresh_expire_time) VALUES ('%s', '%s', x'01', 0)`, uuid.NewString(), u1),
			fmt.Sprintf(`INSERT INTO contacts (owner_id, user_id) VALUES ('%s', '%s'), ('%s', '%s')`, u1, u2, u2, u1),
			fmt.Sprintf(`INSERT INTO blocks (blocker_id, blocked_id) VALUES ('%s', '%s'), ('%s', '%s')`, u1, u2, u2, u1),
			fmt.Sprintf(`DELETE FROM users WHERE id = '%s'`, u1),
		}, true, `SELECT (SELECT count(*) FROM devices) + (SELECT count(*) FROM contacts) + (SELECT count(*) FROM blocks)`},
		{"deleting an event cascades to its reactions", []string{
			conv(c), event(c, 1, u1, ""),
			fmt.Sprintf(`INSERT INTO reactions (conversation_id, message_seq, emoji, user_id) VALUES ('%s', 1, '👍', '%s')`, c, u1),
			fmt.Sprintf(`DELETE FROM events WHERE conversation_id = '%s'`, c),
		}, true, `SELECT count(*) FROM reactions`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := open(t, t.TempDir())
			err := write(t, db, tt.stmts...)
			if (err == nil) != tt.ok {
				t.Fatalf("error %v, want ok=%v", err, tt.ok)
			}
			if tt.check != "" {
				if n := query[int](t, db, tt.check); n != 0 {
					t.Fatalf("%d rows left", n)
				}
			}
		})
	}
}

// A transaction whose context ends before it commits leaves nothing behind,
// and a Write waiting for the write connection gives up with its context.
func TestContextEndsWrite(t *testing.T) {
	insert := `INSERT INTO user_streams (user_id, last_seq) VALUES ('u', 1)`
	tests := []struct {
		name string
		fn   func(ctx context.Context, cancel func(), tx *sqlite.Tx) error
	}{
		{"cancelled before commit", func(ctx context.Context, cancel func(), tx *sqlite.Tx) error {
			if _, err := tx.ExecContext(ctx, insert); err != nil {
				return err
			}
			cancel()
			return nil
		}},
		{"cancelled between statements", func(ctx context.Context, cancel func(), tx *sqlite.Tx) error {
			if _, err := tx.ExecContext(ctx, insert); err != nil {
				return err
			}
			cancel()
			_, err := tx.ExecContext(ctx, `UPDATE user_streams SET last_seq = 2`)
			return err
		}},
		{"cancelled mid-statement", func(ctx context.Context, cancel func(), tx *sqlite.Tx) error {
			if _, err := tx.ExecContext(ctx, insert); err != nil {
				return err
			}
			// Runs for minutes unless the driver interrupts it.
			time.AfterFunc(20*time.Millisecond, cancel)
			var n int64
			return tx.QueryRowContext(ctx, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000)
				SELECT count(*) FROM c`).Scan(&n)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := open(t, t.TempDir())
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			err := db.Write(ctx, func(tx *sqlite.Tx) error { return tt.fn(ctx, cancel, tx) })
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Write: %v, want context.Canceled", err)
			}
			if n := query[int](t, db, `SELECT count(*) FROM user_streams`); n != 0 {
				t.Fatalf("%d rows committed", n)
			}
			// The write connection is usable again.
			if err := write(t, db, insert); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("waiting for the writer", func(t *testing.T) {
		db := open(t, t.TempDir())
		holding, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- db.Write(t.Context(), func(*sqlite.Tx) error {
				close(holding)
				<-release
				return nil
			})
		}()
		<-holding
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		err := db.Write(ctx, func(*sqlite.Tx) error { return nil })
		close(release)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("queued Write: %v, want context.DeadlineExceeded", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// Times are Unix microseconds; a default is now.
func TestTimeDefault(t *testing.T) {
	db := open(t, t.TempDir())
	before := time.Now().UnixMicro()
	if err := write(t, db, `INSERT INTO users (id, username, password_hash) VALUES ('u', 'alice', 'h')`); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMicro()
	// SQLite's clock has millisecond resolution.
	if got := query[int64](t, db, `SELECT create_time FROM users`); got < before-1000 || got > after+1000 {
		t.Fatalf("create_time %d, want between %d and %d", got, before, after)
	}
}

// BenchmarkWrite is the cost of one durable commit of one small row, the
// floor of an embedded send.
func BenchmarkWrite(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", parallel), func(b *testing.B) {
			db, err := sqlite.Open(b.Context(), b.TempDir(), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			commit := func() error {
				return db.Write(b.Context(), func(tx *sqlite.Tx) error {
					_, err := tx.Exec(`INSERT INTO user_streams (user_id, last_seq) VALUES (?, 1)`, uuid.NewString())
					return err
				})
			}
			if !parallel {
				for b.Loop() {
					if err := commit(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := commit(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
