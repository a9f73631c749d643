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
)

// Statements more than one adapter of this package runs (chat, contacts).

// querier is what both a pool and a transaction offer.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// isBlockedBy reports whether by has blocked user. Blocking is one-way: a
// blocked user cannot start or send in a direct conversation with the
// blocker, while the blocker still can. In a transaction it sees that
// transaction's snapshot; a block committed concurrently applies from the
// next call.
func isBlockedBy(ctx context.Context, q querier, user, by uuid.UUID) (bool, error) {
	var blocked bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`,
		by, user).Scan(&blocked); err != nil {
		return false, fmt.Errorf("check block of %s by %s: %w", user, by, err)
	}
	return blocked, nil
}

// appendUserEvent stores body as the user's next own event, in tx, and
// returns it with its seq. The upsert of user_streams locks the user's row,
// so one user's appends are serialised and gap-free.
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
