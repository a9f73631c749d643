package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// txTime is a transaction's time, as precise as it is stored.
func txTime() time.Time { return time.UnixMicro(time.Now().UnixMicro()) }

// appendUserEvent stores body as the user's next own event, in tx at now,
// and returns it with its seq. Writers are serial, so the user's seqs are
// gap-free. It takes no change sequence: Sync reads user events by their
// per-user seq, not by the watermark (Tx.ChangeSeq stamps conversations and
// events only).
func appendUserEvent(ctx context.Context, tx *Tx, now time.Time, user uuid.UUID, body *chatv1.UserEvent) (*chatv1.UserEvent, error) {
	var seq int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO user_streams (user_id, last_seq) VALUES ($1, 1)
		ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1
		RETURNING last_seq`, user).Scan(&seq); err != nil {
		return nil, fmt.Errorf("bump user seq: %w", err)
	}
	encoded, err := proto.Marshal(&chatv1.UserEvent{Kind: body.Kind})
	if err != nil {
		return nil, fmt.Errorf("encode user event: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_events (user_id, seq, create_time, body) VALUES ($1, $2, $3, $4)`,
		user, seq, micros(now), encoded); err != nil {
		return nil, fmt.Errorf("insert user event: %w", err)
	}
	return &chatv1.UserEvent{Seq: uint64(seq), CreateTime: timestamppb.New(now), Kind: body.Kind}, nil
}
