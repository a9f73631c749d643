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
// returns it with its seq. Other services (contacts) call it inside their
// own transactions, then hand the event to Notifier.NotifyUser after commit.
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

// userEventsAfter returns up to limit of the user's events after seq.
func (s *Service) userEventsAfter(ctx context.Context, user uuid.UUID, after int64, limit int) ([]*chatv1.UserEvent, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, create_time, body FROM user_events WHERE user_id = $1 AND seq > $2
		ORDER BY seq LIMIT $3`, user, after, limit)
	if err != nil {
		return nil, fmt.Errorf("user events: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.UserEvent, error) {
		var seq int64
		var at time.Time
		var body []byte
		if err := r.Scan(&seq, &at, &body); err != nil {
			return nil, err
		}
		return decodeUserEvent(user, seq, at, body)
	})
}

// decodeUserEvent turns a user_events row into its API form.
func decodeUserEvent(user uuid.UUID, seq int64, at time.Time, body []byte) (*chatv1.UserEvent, error) {
	ev := &chatv1.UserEvent{}
	if err := proto.Unmarshal(body, ev); err != nil {
		return nil, fmt.Errorf("decode user event %s/%d: %w", user, seq, err)
	}
	ev.Seq, ev.CreateTime = uint64(seq), timestamppb.New(at)
	return ev, nil
}
