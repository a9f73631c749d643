package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/services/contact"
)

// isBlockedBy sees the blocks of the transaction it is called in, and is
// one-way.
func TestIsBlockedByInTransaction(t *testing.T) {
	pool := pgtest.New(t)
	ctx := t.Context()
	alice, bob := uuid.New(), uuid.New()
	for name, id := range map[string]uuid.UUID{"alice": alice, "bob": bob} {
		if _, err := pool.Exec(ctx, `INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')`, id, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := postgres.NewContactStore(pool).Block(ctx, contact.Block{Blocker: alice, Blocked: bob}); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, tc := range []struct {
			name     string
			user, by uuid.UUID
			want     bool
		}{
			{"bob by alice", bob, alice, true},
			{"alice by bob", alice, bob, false},
			{"bob by a stranger", bob, uuid.New(), false},
		} {
			got, err := postgres.IsBlockedBy(context.Background(), tx, tc.user, tc.by)
			if err != nil {
				return err
			}
			if got != tc.want {
				t.Errorf("%s = %t, want %t", tc.name, got, tc.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
