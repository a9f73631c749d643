package errcode_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/errcode"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/internal/sqlitetest"
	"github.com/wagglechat/waggle/sqlite"
)

// errorsFromServers makes each failure happen for real, against the
// machine's Postgres and Redis and throwaway servers this test stops.
func errorsFromServers(t *testing.T) map[string]error {
	ctx := t.Context()
	errs := map[string]error{}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }

	db := pgtest.New(t)
	_, errs["postgres syntax error"] = db.Exec(ctx, "SELEC 1")
	_, errs["postgres unique violation"] = db.Exec(ctx, "CREATE TABLE t (k int PRIMARY KEY); INSERT INTO t VALUES (1), (1)")

	// Two serializable transactions writing what the other read.
	if _, err := db.Exec(ctx, "CREATE TABLE s (k int, v int); INSERT INTO s VALUES (1, 0), (2, 0)"); err != nil {
		t.Fatal(err)
	}
	a, _ := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	b, _ := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	for _, step := range []struct {
		tx  pgx.Tx
		sql string
	}{{a, "SELECT sum(v) FROM s"}, {b, "SELECT sum(v) FROM s"}, {a, "UPDATE s SET v = 1 WHERE k = 1"}, {b, "UPDATE s SET v = 1 WHERE k = 2"}} {
		if _, err := step.tx.Exec(ctx, step.sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	errs["postgres serialization failure"] = b.Commit(ctx)

	// A backend terminated by an administrator (57P01).
	conn, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	_, errs["postgres connection terminated"] = conn.Exec(ctx, "SELECT 1")
	conn.Release()

	// Pool exhaustion: the only connection is taken, and the caller's
	// deadline passes while waiting.
	one, err := pgxpool.New(ctx, pgtest.BaseURL()+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	held, err := one.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, errs["postgres pool exhausted"] = one.Exec(waitCtx, "SELECT 1")
	cancel()
	held.Release()

	// A server that goes away: before a query, and between queries.
	pg := pgtest.StartServer(t)
	pool, err := pgxpool.New(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	qctx, cancel := short()
	_, errs["postgres stopped, pooled connection"] = pool.Exec(qctx, "SELECT 1")
	_, errs["postgres stopped, new connection"] = pgx.Connect(qctx, pg.URL("postgres"))
	cancel()

	rc, _ := redistest.New(t)
	rc.Set(ctx, "errcode:"+t.Name(), "x", time.Minute)
	errs["redis wrong type"] = rc.Incr(ctx, "errcode:"+t.Name()).Err()
	rc.Del(ctx, "errcode:"+t.Name())

	rs := redistest.StartServer(t)
	r := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1})
	defer r.Close()
	if err := r.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	rctx, cancel := short()
	errs["redis stopped"] = r.Ping(rctx).Err()
	cancel()
	closed := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	closed.Close()
	errs["redis client closed"] = closed.Ping(ctx).Err()

	embeddedErrors(t, errs)
	return errs
}

// embeddedErrors makes the embedded database's failures happen for real.
func embeddedErrors(t *testing.T, errs map[string]error) {
	ctx := t.Context()
	db := sqlitetest.New(t)
	errs["sqlite syntax error"] = db.Write(ctx, func(tx *sqlite.Tx) error {
		_, err := tx.ExecContext(ctx, "SELEC 1")
		return err
	})
	errs["sqlite unique violation"] = db.Write(ctx, func(tx *sqlite.Tx) error {
		_, err := tx.ExecContext(ctx, "CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (1)")
		return err
	})
	// The disk fills: the file may not grow past its size now.
	errs["sqlite disk full"] = db.Write(ctx, func(tx *sqlite.Tx) error {
		if _, err := tx.ExecContext(ctx, "PRAGMA max_page_count = 1"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "CREATE TABLE big (b BLOB); INSERT INTO big VALUES (zeroblob(1 << 20))")
		return err
	})

	// Another process holds the database's write lock: two connections of
	// their own, the second one not waiting.
	path := filepath.Join(t.TempDir(), "locked.db")
	holder, err := sql.Open("sqlite", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	held, err := holder.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback()
	if _, err := held.ExecContext(ctx, "CREATE TABLE x (k INTEGER)"); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", path+"?_txlock=immediate&_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, errs["sqlite database locked"] = other.BeginTx(ctx, nil)
}

func TestOf(t *testing.T) {
	real := errorsFromServers(t)
	ctx := t.Context()
	done, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want connect.Code
	}{
		{"postgres syntax error", ctx, real["postgres syntax error"], connect.CodeInternal},
		{"postgres unique violation", ctx, real["postgres unique violation"], connect.CodeInternal},
		{"postgres serialization failure", ctx, real["postgres serialization failure"], connect.CodeAborted},
		{"postgres connection terminated", ctx, real["postgres connection terminated"], connect.CodeUnavailable},
		{"postgres pool exhausted", ctx, real["postgres pool exhausted"], connect.CodeDeadlineExceeded},
		{"postgres stopped, pooled connection", ctx, real["postgres stopped, pooled connection"], connect.CodeUnavailable},
		{"postgres stopped, new connection", ctx, real["postgres stopped, new connection"], connect.CodeUnavailable},
		{"sqlite syntax error", ctx, real["sqlite syntax error"], connect.CodeInternal},
		{"sqlite unique violation", ctx, real["sqlite unique violation"], connect.CodeInternal},
		{"sqlite disk full", ctx, real["sqlite disk full"], connect.CodeUnavailable},
		{"sqlite database locked", ctx, real["sqlite database locked"], connect.CodeUnavailable},
		{"redis wrong type", ctx, real["redis wrong type"], connect.CodeInternal},
		{"redis stopped", ctx, real["redis stopped"], connect.CodeUnavailable},
		{"redis client closed", ctx, real["redis client closed"], connect.CodeUnavailable},
		{"redis pool timeout", ctx, redis.ErrPoolTimeout, connect.CodeUnavailable},
		{"redis loading", ctx, redisReply("LOADING Redis is loading the dataset in memory"), connect.CodeUnavailable},
		{"unexpected EOF", ctx, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), connect.CodeUnavailable},
		{"connect error keeps its code", ctx, connect.NewError(connect.CodeNotFound, errors.New("no")), connect.CodeNotFound},
		{"downstream reset reported as canceled", ctx,
			connect.NewError(connect.CodeCanceled, fmt.Errorf("read tcp: %w", syscall.ECONNRESET)), connect.CodeUnavailable},
		{"canceled by the caller", done, connect.NewError(connect.CodeCanceled, context.Canceled), connect.CodeCanceled},
		{"the caller's context canceled", done, fmt.Errorf("query: %w", context.Canceled), connect.CodeCanceled},
		{"deadline", ctx, fmt.Errorf("query: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded},
		{"plain error", ctx, errors.New("a bug"), connect.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("the failure did not happen")
			}
			for _, err := range []error{tt.err, fmt.Errorf("wrapped: %w", tt.err)} {
				if got := errcode.Of(tt.ctx, err); got != tt.want {
					t.Errorf("Of(%v) = %v, want %v", err, got, tt.want)
				}
			}
		})
	}
}

type redisReply string

func (r redisReply) Error() string { return string(r) }
func (redisReply) RedisError()     {}

func TestPublicHidesDetails(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	secret := errors.New(`dial tcp 10.0.0.7:5432: connect: connection refused (password=hunter2)`)
	tests := []struct {
		err     error
		code    connect.Code
		message string
	}{
		{fmt.Errorf("insert: %w", &netErr{secret}), connect.CodeUnavailable, "send message: temporarily unavailable, retry"},
		{errors.New("SELECT secret FROM x"), connect.CodeInternal, "send message failed"},
		{connect.NewError(connect.CodeNotFound, errors.New("conversation not found")), connect.CodeNotFound, "conversation not found"},
	}
	for _, tt := range tests {
		err := errcode.Public(t.Context(), log, "send message", tt.err)
		ce := new(connect.Error)
		if !errors.As(err, &ce) || ce.Code() != tt.code || ce.Message() != tt.message {
			t.Errorf("Public(%v) = %v, want %v %q", tt.err, err, tt.code, tt.message)
		}
	}
	if !strings.Contains(logged.String(), "SELECT secret") {
		t.Errorf("the internal error was not logged: %s", logged.String())
	}
}

// netErr is a net.Error, as a dial or read failure is.
type netErr struct{ error }

func (netErr) Timeout() bool   { return false }
func (netErr) Temporary() bool { return false }
