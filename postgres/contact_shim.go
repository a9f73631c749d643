package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
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

// appendUserEvent stores body as the user's next own event, in tx: the
// statements of chat.AppendUserEvent, which cannot be called from here (the
// chat tests import this package).
func appendUserEvent(ctx context.Context, tx pgx.Tx, user uuid.UUID, body *chatv1.UserEvent) (*chatv1.UserEvent, error) {
	var seq int64
	if err := tx.QueryRow(ctx, `INSERT INTO user_streams (user_id, last_seq) VALUES ($1, 1)
		ON CONFLICT (user_id) DO UPDATE SET last_seq = user_streams.last_seq + 1
		RETURNING last_seq`, user).Scan(&seq); err != nil {
		return nil, fmt.Errorf("bump user seq: %w", err)
	}
	encoded, err := proto.Marshal(&chatv1.UserEvent{Kind: body.Kind})
	if err != nil {
		return nil, fmt.Errorf("encode user event: %w", err)
	}
	var at time.Time
	if err := tx.QueryRow(ctx, `INSERT INTO user_events (user_id, seq, body) VALUES ($1, $2, $3) RETURNING create_time`,
		user, seq, encoded).Scan(&at); err != nil {
		return nil, fmt.Errorf("insert user event: %w", err)
	}
	return &chatv1.UserEvent{Seq: uint64(seq), CreateTime: timestamppb.New(at), Kind: body.Kind}, nil
}
