// Package sqlitetest gives each test its own migrated embedded database in
// the test's temporary directory, closed when the test ends.
package sqlitetest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/wagglechat/waggle/sqlite"
)

// New opens a fresh database.
func New(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("sqlitetest: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("sqlitetest: close: %v", err)
		}
	})
	return db
}
