package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/chat"
	"github.com/wagglechat/waggle/services/contact/block"
)

// querier is a pool, a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// isBlockedBy reports whether by has blocked user.
func isBlockedBy(ctx context.Context, q querier, user, by uuid.UUID) (bool, error) {
	return block.IsBlockedBy(ctx, q, user, by)
}

// appendUserEvent stores body as the user's next own event, in tx.
func appendUserEvent(ctx context.Context, tx pgx.Tx, user uuid.UUID, body *chatv1.UserEvent) (*chatv1.UserEvent, error) {
	return chat.AppendUserEvent(ctx, tx, user, body)
}
