package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/chat"
)

// The reads of the chat fanout (chat.FanoutStore).

func (s *ChatStore) RecentEvents(ctx context.Context, window time.Duration) ([]chat.EventRow, error) {
	rows, err := s.db.Query(ctx, `SELECT `+eventColumns+` FROM conversations c
		JOIN events e ON e.conversation_id = c.id AND e.seq = c.last_seq
		WHERE c.update_time >= now() - make_interval(secs => $1)`, window.Seconds())
	if err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	evs, err := collectEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("recent events: %w", err)
	}
	return evs, nil
}

func (s *ChatStore) Route(ctx context.Context, conv uuid.UUID) (bool, [2]uuid.UUID, error) {
	var pair [2]uuid.UUID
	var typ chatv1.ConversationType
	var key *string
	if err := s.db.QueryRow(ctx, `SELECT type, direct_key FROM conversations WHERE id = $1`, conv).Scan(&typ, &key); err != nil {
		return false, pair, notFound("read conversation type", err)
	}
	if typ != chatv1.ConversationType_CONVERSATION_TYPE_DIRECT {
		return false, pair, nil
	}
	var a, b string
	ok := key != nil
	if ok {
		a, b, ok = strings.Cut(*key, ":")
	}
	var errA, errB error
	pair[0], errA = uuid.Parse(a)
	pair[1], errB = uuid.Parse(b)
	if !ok || errA != nil || errB != nil {
		return false, pair, fmt.Errorf("direct conversation %s has no member pair", conv)
	}
	return true, pair, nil
}

func (s *ChatStore) PushRecipients(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID, limit int) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id::text FROM members WHERE conversation_id = $1
		AND joined_seq < $2 AND left_seq IS NULL AND user_id <> $3 LIMIT $4`, conv, seq, sender, limit)
	if err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	return users, nil
}

func (s *ChatStore) PushDetails(ctx context.Context, conv, sender uuid.UUID) (string, string, error) {
	var title, name string
	if err := s.db.QueryRow(ctx, `SELECT c.title, coalesce((SELECT display_name FROM users WHERE id = $2), '')
		FROM conversations c WHERE c.id = $1`, conv, sender).Scan(&title, &name); err != nil {
		return "", "", fmt.Errorf("conversation: %w", err)
	}
	return title, name, nil
}

func (s *ChatStore) PushBadges(ctx context.Context, conv uuid.UUID, users []string, max int) (map[string]uint64, error) {
	rows, err := s.db.Query(ctx, `
		SELECT o.user_id::text, (SELECT count(*) FROM (SELECT FROM members m JOIN events u ON u.conversation_id = m.conversation_id
			WHERE m.user_id = o.user_id AND m.left_seq IS NULL AND NOT m.muted AND `+unreadFilter+` LIMIT $3) capped)
		FROM members o WHERE o.conversation_id = $1 AND o.user_id = ANY($2::uuid[]) AND o.left_seq IS NULL AND NOT o.muted`,
		conv, users, max)
	if err != nil {
		return nil, fmt.Errorf("badges: %w", err)
	}
	badges := map[string]uint64{}
	var user string
	var n uint64
	if _, err := pgx.ForEachRow(rows, []any{&user, &n}, func() error {
		badges[user] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("badges: %w", err)
	}
	return badges, nil
}
