// Package block answers "has this user been blocked by that one?" for other
// services, inside their own transactions.
//
// It is a leaf package (pgx and uuid only) so that the chat service can
// import it while the contact service, which writes blocks, imports the chat
// service for the user event stream. Package contact re-exports it.
package block

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Querier is what IsBlockedBy needs from Postgres; *pgxpool.Pool, *pgx.Conn
// and pgx.Tx all satisfy it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// IsBlockedBy reports whether by has blocked user. Blocking is one-way: a
// blocked user cannot start or send in a direct conversation with the
// blocker, while the blocker still can (and can unblock at any time).
//
// Called in the caller's transaction it sees that transaction's snapshot; a
// block committed concurrently applies from the next call.
func IsBlockedBy(ctx context.Context, q Querier, user, by uuid.UUID) (bool, error) {
	var blocked bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`,
		by, user).Scan(&blocked); err != nil {
		return false, fmt.Errorf("check block of %s by %s: %w", user, by, err)
	}
	return blocked, nil
}
