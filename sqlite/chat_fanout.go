package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/chat"
)

// The reads of the chat fanout (chat.FanoutStore).

func (s *ChatStore) RecentEvents(ctx context.Context, window time.Duration) (evs []chat.EventRow, err error) {
	err = s.read(ctx, "recent events", func(tx *sql.Tx) (err error) {
		evs, err = queryAll(ctx, tx, scanEvent, `SELECT `+eventColumns+` FROM conversations c
			JOIN events e ON e.conversation_id = c.id AND e.seq = c.last_seq
			WHERE c.update_time >= $1`, micros(time.Now().Add(-window)))
		return err
	})
	return evs, err
}

// Route reads a direct conversation's pair from its direct_key.
func (s *ChatStore) Route(ctx context.Context, conv uuid.UUID) (direct bool, pair [2]uuid.UUID, err error) {
	err = s.read(ctx, "read conversation type", func(tx *sql.Tx) error {
		var typ chatv1.ConversationType
		var a, b *uuid.UUID
		err := tx.QueryRowContext(ctx, `SELECT type, substr(direct_key, 1, 36), substr(direct_key, 38) FROM conversations
			WHERE id = $1`, conv).Scan(&typ, &a, &b)
		if err != nil || typ != chatv1.ConversationType_CONVERSATION_TYPE_DIRECT {
			return err
		}
		if a == nil || b == nil {
			return fmt.Errorf("direct conversation %s has no member pair", conv)
		}
		direct, pair = true, [2]uuid.UUID{*a, *b}
		return nil
	})
	return direct, pair, err
}

func (s *ChatStore) PushRecipients(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID, limit int) (users []string, err error) {
	err = s.read(ctx, "recipients", func(tx *sql.Tx) (err error) {
		users, err = queryAll(ctx, tx, scanOne[string], `SELECT user_id FROM members WHERE conversation_id = $1
			AND joined_seq < $2 AND left_seq IS NULL AND user_id <> $3 LIMIT $4`, conv, seq, sender, limit)
		return err
	})
	return users, err
}

func (s *ChatStore) PushDetails(ctx context.Context, conv, sender uuid.UUID) (title, name string, err error) {
	err = s.read(ctx, "conversation", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT c.title, coalesce((SELECT display_name FROM users WHERE id = $2), '')
			FROM conversations c WHERE c.id = $1`, conv, sender).Scan(&title, &name)
	})
	return title, name, err
}

func (s *ChatStore) PushBadges(ctx context.Context, conv uuid.UUID, users []string, max int) (map[string]uint64, error) {
	type badge struct {
		user string
		n    uint64
	}
	var rows []badge
	err := s.read(ctx, "badges", func(tx *sql.Tx) (err error) {
		rows, err = queryAll(ctx, tx, func(r *sql.Rows) (badge, error) {
			var b badge
			return b, r.Scan(&b.user, &b.n)
		}, `
			SELECT o.user_id, (SELECT count(*) FROM (SELECT 1 FROM members m JOIN events u ON u.conversation_id = m.conversation_id
				WHERE m.user_id = o.user_id AND m.left_seq IS NULL AND NOT m.muted AND `+unreadFilter+` LIMIT $3))
			FROM members o WHERE o.conversation_id = $1 AND o.user_id IN (SELECT value FROM json_each($2))
				AND o.left_seq IS NULL AND NOT o.muted`,
			conv, jsonList(users), max)
		return err
	})
	if err != nil {
		return nil, err
	}
	badges := make(map[string]uint64, len(rows))
	for _, b := range rows {
		badges[b.user] = b.n
	}
	return badges, nil
}
