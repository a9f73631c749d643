package chat

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

// AppendUserEvent stores body as the user's next own event, in tx, and
// returns it with its seq. Only the contact service calls it, inside its
// own transactions, until it has a storage adapter of its own; the chat
// service itself appends through Tx.AppendUserEvent (postgres/shared.go
// holds the same statements). The file goes once contact no longer uses it.
func AppendUserEvent(ctx context.Context, tx pgx.Tx, user uuid.UUID, body *chatv1.UserEvent) (*chatv1.UserEvent, error) {
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
