// Package pgtest gives each test its own migrated database on the machine's
// Postgres and drops it when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wagglechat/waggle/internal/testdeps"
	"github.com/wagglechat/waggle/postgres"
)

// BaseURL is the server tests create their databases on; override it with
// WAGGLE_TEST_POSTGRES_URL.
func BaseURL() string {
	if u := os.Getenv("WAGGLE_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// require skips the test (fails it with CI=true) if the server at BaseURL
// does not answer.
func require(t testing.TB) {
	t.Helper()
	base := BaseURL()
	cfg, err := pgconn.ParseConfig(base)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", base, err)
	}
	network, addr := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", filepath.Join(cfg.Host, ".s.PGSQL."+strconv.Itoa(int(cfg.Port)))
	}
	testdeps.Require(t, "postgres", network, addr, "start it (make deps) or set WAGGLE_TEST_POSTGRES_URL")
}

// NewURL creates an empty, migrated database and returns its URL. Without
// a reachable server it skips the test (fails it with CI=true).
func NewURL(t testing.TB) string {
	t.Helper()
	require(t)
	ctx := context.Background()
	base := BaseURL()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: connect %s: %v", base, err)
	}
	defer admin.Close(ctx)

	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "waggle_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("pgtest: cleanup connect: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})

	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", base, err)
	}
	u.Path = "/" + name
	dbURL := u.String()

	pool, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dbURL
}

// New creates a migrated database and returns a pool on it, closed at the
// end of the test. Without a reachable server it skips the test (fails it
// with CI=true).
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Open(context.Background(), NewURL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
