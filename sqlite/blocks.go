package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"
)

// querier is what both a read and a write transaction offer.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// isBlockedBy reports whether by has blocked user. Blocking is one-way: a
// blocked user cannot start or send in a direct conversation with the
// blocker, while the blocker still can.
func isBlockedBy(ctx context.Context, q querier, user, by uuid.UUID) (bool, error) {
	var blocked bool
	if err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`,
		by, user).Scan(&blocked); err != nil {
		return false, fmt.Errorf("check block of %s by %s: %w", user, by, err)
	}
	return blocked, nil
}
