package postgres_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"testing"

	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/migrations"
	"github.com/wagglechat/waggle/postgres"
)

// Processes starting together must not race applying migrations.
func TestConcurrentMigrationsApplyOnce(t *testing.T) {
	pool := pgtest.New(t) // migrated once already; roll it back to empty
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.Migrate(ctx, pool, log) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var applied int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if files, _ := fs.Glob(migrations.FS, "*.sql"); applied != len(files) {
		t.Fatalf("%d migrations recorded, want %d", applied, len(files))
	}
}
