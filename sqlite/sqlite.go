// Package sqlite is Waggle's embedded store: one SQLite database file in a
// data directory, opened through modernc.org/sqlite (pure Go, so builds need
// no cgo), with its migrations embedded in the binary.
//
// SQLite lets one connection write at a time. A DB therefore holds one write
// connection, on which every transaction begins with BEGIN IMMEDIATE (it takes
// the write lock first, so a transaction that reads and then writes never
// fails with SQLITE_BUSY half-way), and a small pool of read-only
// connections: in WAL mode readers see a snapshot and neither wait for the
// writer nor block it.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// FileName is the database file inside the data directory (with its -wal and
// -shm files beside it).
const FileName = "waggle.db"

// readConns is the number of read connections.
const readConns = 4

// busyTimeout bounds how long a connection waits for a lock another process
// (or, at start, another connection) holds. Inside one DB writers queue on
// the single write connection instead.
const busyTimeout = 5 * time.Second

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is the embedded database.
type DB struct {
	write *sql.DB // exactly one connection
	read  *sql.DB // readConns query-only connections
}

// Open opens (creating it and dir if need be) the database in dir and applies
// every embedded migration not yet applied.
func Open(ctx context.Context, dir string, log *slog.Logger) (*DB, error) {
	path := filepath.Join(dir, FileName)
	// The driver splits its DSN at the first '?'.
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: data directory %q: a path with '?' is not supported", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: data directory: %w", err)
	}
	// The writer connects first (below), so the file exists and is in WAL
	// mode before any reader opens it; journal_mode is kept in the file.
	write, err := sql.Open("sqlite", dsn(path, url.Values{"_journal_mode": {"WAL"}, "_txlock": {"immediate"}}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// query_only: a write through the read pool is a bug.
	read, err := sql.Open("sqlite", dsn(path, url.Values{"_query_only": {"on"}}))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	read.SetMaxOpenConns(readConns)
	read.SetMaxIdleConns(readConns)
	read.SetConnMaxLifetime(0)
	read.SetConnMaxIdleTime(0)
	db := &DB{write: write, read: read}
	if err := db.migrate(ctx, log); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// dsn is path with the settings of every connection and extra.
func dsn(path string, extra url.Values) string {
	q := url.Values{
		"_busy_timeout": {strconv.FormatInt(busyTimeout.Milliseconds(), 10)},
		"_foreign_keys": {"on"},
		// FULL syncs the WAL on every commit, so a commit that returned
		// survives a crash or power loss (NORMAL only guards against
		// corruption). A send is acked after its commit: an ack means the
		// message is kept.
		"_synchronous": {"FULL"},
	}
	for k, v := range extra {
		q[k] = v
	}
	return path + "?" + q.Encode()
}

func (db *DB) migrate(ctx context.Context, log *slog.Logger) error {
	fsys, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectSQLite3, db.write, fsys)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	for _, r := range results {
		log.Info("migration applied", "store", "sqlite", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// Close closes every connection.
func (db *DB) Close() error {
	return errors.Join(db.read.Close(), db.write.Close())
}

// Tx is a write transaction.
type Tx struct {
	*sql.Tx
	changeSeq int64
}

// ChangeSeq is this transaction's change sequence: the value Sync's watermark
// takes from rows this transaction writes (conversations.change_seq,
// events.change_seq). The first call takes the next value of the one-row
// counter; later calls in the same transaction return the same value.
//
// Why that is exact: write transactions run one at a time (one write
// connection, BEGIN IMMEDIATE), and the counter is bumped inside them, so
// change sequences increase in commit order, and no transaction can commit a
// smaller value after a larger one is visible. A reader whose snapshot
// shows counter value W therefore sees every row with change_seq <= W and
// none above it, and any later commit writes values > W: a Sync cursor of W
// misses and repeats nothing. (Postgres assigns xids at transaction start and
// commits them out of order, hence its xid8 snapshot scheme there.)
func (tx *Tx) ChangeSeq(ctx context.Context) (int64, error) {
	if tx.changeSeq != 0 {
		return tx.changeSeq, nil
	}
	err := tx.QueryRowContext(ctx, `UPDATE change_counter SET seq = seq + 1 RETURNING seq`).Scan(&tx.changeSeq)
	if err != nil {
		return 0, fmt.Errorf("sqlite: change sequence: %w", err)
	}
	return tx.changeSeq, nil
}

// Write runs fn in a write transaction and commits it if fn returns nil.
// Calls queue for the one write connection (giving up when ctx ends). When
// Write returns nil the commit is on disk. If ctx ends before the commit, the
// transaction is rolled back and Write returns an error.
func (db *DB) Write(ctx context.Context, fn func(*Tx) error) error {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer sqlTx.Rollback() // no-op once committed
	if err := fn(&Tx{Tx: sqlTx}); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		// When ctx ends, database/sql rolls the transaction back on its
		// own, and Commit may only say it is done: the cause is ctx's.
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, sql.ErrTxDone) {
			err = ctxErr
		}
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// Read runs fn in a read-only transaction, so every query in fn sees the same
// snapshot. Writing in fn fails.
func (db *DB) Read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: begin read: %w", err)
	}
	// A read transaction has nothing to commit; ending it releases the
	// snapshot (and lets checkpoints move past it).
	defer tx.Rollback()
	return fn(tx)
}
