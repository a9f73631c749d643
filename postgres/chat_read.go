package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/chatsql"
	"github.com/wagglechat/waggle/services/chat"
)

// The chat store's reads outside transactions.

func (s *ChatStore) CanWrite(ctx context.Context, conv, user uuid.UUID) (int, error) {
	var count int
	err := s.db.QueryRow(ctx, `SELECT c.member_count FROM conversations c WHERE c.id = $1 AND `+canWrite,
		conv, user).Scan(&count)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, whyRefused(ctx, s.db, conv, user)
	}
	if err != nil {
		return 0, fmt.Errorf("check writer: %w", err)
	}
	return count, nil
}

func (s *ChatStore) MessageByClientID(ctx context.Context, conv, sender uuid.UUID, clientMsgID string) (chat.EventRow, error) {
	var r chat.EventRow
	err := s.db.QueryRow(ctx, `SELECT `+eventColumns+` FROM events e
		WHERE e.conversation_id = $1 AND e.actor_id = $2 AND e.client_msg_id = $3`, conv, sender, clientMsgID).Scan(eventFields(&r)...)
	return r, notFound("find client_msg_id", err)
}

func (s *ChatStore) Message(ctx context.Context, conv, msgID, viewer uuid.UUID) (chat.EventRow, error) {
	return findMessage(ctx, s.db, conv, msgID, viewer, "")
}

// unreadFilter selects, for member m, the events u that count as unread
// (chat.ConversationRow.Unread). Counts are derived from the sequence and
// the marker on every read, so they cannot drift.
const unreadFilter = `u.kind = 1 AND u.seq > greatest(m.read_seq, m.joined_seq)
	AND (m.left_seq IS NULL OR u.seq <= m.left_seq) AND u.actor_id <> m.user_id AND u.recall_time IS NULL
	AND NOT EXISTS (SELECT 1 FROM hidden_messages h
		WHERE h.user_id = m.user_id AND h.conversation_id = u.conversation_id AND h.message_seq = u.seq)`

// conversationQuery reads conversations as member $1 sees them.
const conversationQuery = `
	SELECT c.id, c.type, c.title, c.last_seq, c.member_count, c.create_time, c.update_time,
		m.role, m.joined_seq, m.join_time, m.read_seq, m.muted,
		(SELECT count(*) FROM events u WHERE u.conversation_id = c.id AND ` + unreadFilter + `),
		(SELECT p.user_id FROM members p WHERE c.type = 1 AND p.conversation_id = c.id AND p.user_id <> m.user_id),
		last.*
	FROM members m JOIN conversations c ON c.id = m.conversation_id
	LEFT JOIN LATERAL (
		SELECT ` + eventColumns + ` FROM events e
		WHERE e.conversation_id = c.id AND e.kind = 1 AND e.seq > m.joined_seq AND ` + chatsql.NotHidden + `
		ORDER BY e.seq DESC LIMIT 1) last ON true
	WHERE m.user_id = $1 AND m.left_seq IS NULL`

func scanConversation(row pgx.Row) (chat.ConversationRow, error) {
	var c chat.ConversationRow
	var last struct {
		convID               *uuid.UUID
		seq                  *int64
		kind                 *chat.EventKind
		actor                *uuid.UUID
		device               *uuid.UUID
		created              *time.Time
		body                 []byte
		messageID            *uuid.UUID
		clientMsgID          *string
		editTime, recallTime *time.Time
	}
	err := row.Scan(&c.ID, &c.Type, &c.Title, &c.LastSeq, &c.MemberCount, &c.Created, &c.Updated,
		&c.Role, &c.JoinedSeq, &c.JoinTime, &c.ReadSeq, &c.Muted, &c.Unread, &c.Peer,
		&last.convID, &last.seq, &last.kind, &last.actor, &last.device, &last.created, &last.body,
		&last.messageID, &last.clientMsgID, &last.editTime, &last.recallTime)
	if err != nil {
		return c, err
	}
	if last.seq != nil {
		c.Last = &chat.EventRow{Conv: *last.convID, Seq: *last.seq, Kind: *last.kind, Actor: *last.actor, Device: last.device,
			Created: *last.created, Body: last.body, MessageID: last.messageID, ClientMsgID: last.clientMsgID,
			EditTime: last.editTime, RecallTime: last.recallTime}
	}
	return c, nil
}

func (s *ChatStore) Conversation(ctx context.Context, viewer, conv uuid.UUID) (chat.ConversationRow, error) {
	c, err := scanConversation(s.db.QueryRow(ctx, conversationQuery+` AND c.id = $2`, viewer, conv))
	return c, notFound("get conversation", err)
}

func (s *ChatStore) ListConversations(ctx context.Context, viewer uuid.UUID, beforeTime time.Time, beforeID uuid.UUID, limit int) ([]chat.ConversationRow, error) {
	rows, err := s.db.Query(ctx, conversationQuery+`
		AND (c.update_time, c.id) < ($2, $3) ORDER BY c.update_time DESC, c.id DESC LIMIT $4`,
		viewer, beforeTime, beforeID, limit)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	convs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (chat.ConversationRow, error) { return scanConversation(r) })
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	return convs, nil
}

func (s *ChatStore) Unread(ctx context.Context, user, conv uuid.UUID) (uint64, error) {
	var n uint64
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM members m JOIN events u ON u.conversation_id = m.conversation_id
		WHERE m.user_id = $1 AND m.conversation_id = $2 AND `+unreadFilter, user, conv).Scan(&n); err != nil {
		return 0, fmt.Errorf("unread: %w", err)
	}
	return n, nil
}

func (s *ChatStore) Badge(ctx context.Context, user uuid.UUID) (uint64, error) {
	var n uint64
	if err := s.db.QueryRow(ctx, `
		SELECT count(*) FROM members m JOIN events u ON u.conversation_id = m.conversation_id
		WHERE m.user_id = $1 AND m.left_seq IS NULL AND NOT m.muted AND `+unreadFilter,
		user).Scan(&n); err != nil {
		return 0, fmt.Errorf("badge: %w", err)
	}
	return n, nil
}

func (s *ChatStore) ListMembers(ctx context.Context, conv, viewer, after uuid.UUID, limit int) ([]*chatv1.Member, error) {
	rows, err := s.db.Query(ctx, `
		SELECT m.user_id, m.role, m.joined_seq, m.join_time, m.read_seq, m.muted AND m.user_id = $2
		FROM members m WHERE m.conversation_id = $1 AND m.left_seq IS NULL AND m.user_id > $3
			AND EXISTS (SELECT 1 FROM members me WHERE me.conversation_id = $1 AND me.user_id = $2 AND me.left_seq IS NULL)
		ORDER BY m.user_id LIMIT $4`, conv, viewer, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	members, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.Member, error) {
		var m chatv1.Member
		var user uuid.UUID
		var joined time.Time
		if err := r.Scan(&user, &m.Role, &m.JoinedSeq, &joined, &m.ReadSeq, &m.Muted); err != nil {
			return nil, err
		}
		m.UserId, m.JoinTime = user.String(), timestamppb.New(joined)
		return &m, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return members, nil
}

func (s *ChatStore) Span(ctx context.Context, conv, user uuid.UUID) (int64, *int64, error) {
	var joined int64
	var left *int64
	err := s.db.QueryRow(ctx, `SELECT joined_seq, left_seq FROM members WHERE conversation_id = $1 AND user_id = $2`,
		conv, user).Scan(&joined, &left)
	return joined, left, notFound("read membership", err)
}

func (s *ChatStore) Messages(ctx context.Context, conv, viewer uuid.UUID, lo, hi int64, forward bool, limit int) ([]chat.EventRow, error) {
	query := `SELECT ` + eventColumns + ` FROM events e JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $5
		WHERE e.conversation_id = $1 AND e.kind = 1 AND e.seq BETWEEN $2 AND $3 AND ` + chatsql.NotHidden + `
		ORDER BY e.seq DESC LIMIT $4`
	if forward {
		query = strings.Replace(query, "DESC", "ASC", 1)
	}
	rows, err := s.db.Query(ctx, query, conv, lo, hi, limit, viewer)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	found, err := collectEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	return found, nil
}

func (s *ChatStore) MessageChanges(ctx context.Context, conv uuid.UUID, targets []int64) ([]chat.Change, error) {
	rows, err := s.db.Query(ctx, `SELECT `+eventColumns+`, e.target_seq, e.prev_body FROM events e
		WHERE e.conversation_id = $1 AND e.target_seq = ANY($2) ORDER BY e.seq`, conv, targets)
	if err != nil {
		return nil, fmt.Errorf("message changes: %w", err)
	}
	changes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Change, error) {
		var c chat.Change
		return c, row.Scan(eventFields(&c.EventRow, &c.Target, &c.Prev)...)
	})
	if err != nil {
		return nil, fmt.Errorf("message changes: %w", err)
	}
	return changes, nil
}

func (s *ChatStore) Reactions(ctx context.Context, conv, viewer uuid.UUID, seqs []int64) ([]chat.ReactionCount, error) {
	rows, err := s.db.Query(ctx, `SELECT message_seq, emoji, count(*), bool_or(user_id = $3) FROM reactions
		WHERE conversation_id = $1 AND message_seq = ANY($2) GROUP BY message_seq, emoji ORDER BY message_seq, min(create_time)`,
		conv, seqs, viewer)
	if err != nil {
		return nil, fmt.Errorf("reactions: %w", err)
	}
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.ReactionCount, error) {
		var r chat.ReactionCount
		return r, row.Scan(&r.Seq, &r.Emoji, &r.Count, &r.Mine)
	})
	if err != nil {
		return nil, fmt.Errorf("reactions: %w", err)
	}
	return counts, nil
}

func (s *ChatStore) ReactionUsers(ctx context.Context, conv uuid.UUID, seq int64, emoji string, after uuid.UUID, limit int) ([]uuid.UUID, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id FROM reactions WHERE conversation_id = $1 AND message_seq = $2 AND emoji = $3
		AND user_id > $4 ORDER BY user_id LIMIT $5`, conv, seq, emoji, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list reactions: %w", err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("list reactions: %w", err)
	}
	return users, nil
}

func (s *ChatStore) MessageSender(ctx context.Context, conv, viewer uuid.UUID, seq int64) (uuid.UUID, error) {
	var sender uuid.UUID
	err := s.db.QueryRow(ctx, `SELECT e.actor_id FROM events e JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3
		WHERE e.conversation_id = $1 AND e.seq = $2 AND e.kind = 1 AND e.seq > m.joined_seq AND (m.left_seq IS NULL OR e.seq <= m.left_seq)`,
		conv, seq, viewer).Scan(&sender)
	return sender, notFound("find message", err)
}

// audience is who a message at $2 by $3 in $1 is for (chat.ReceiptPage).
const audience = `m.conversation_id = $1 AND m.left_seq IS NULL AND m.joined_seq < $2 AND m.user_id <> $3`

func (s *ChatStore) ReadReceipts(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID, read bool, after uuid.UUID, limit int) (chat.ReceiptPage, error) {
	var p chat.ReceiptPage
	if err := s.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE m.read_seq >= $2), count(*) FILTER (WHERE m.read_seq < $2)
		FROM members m WHERE `+audience, conv, seq, sender).Scan(&p.Read, &p.Unread); err != nil {
		return p, fmt.Errorf("count receipts: %w", err)
	}
	rows, err := s.db.Query(ctx, `SELECT m.user_id, m.read_seq FROM members m WHERE `+audience+`
		AND (m.read_seq >= $2) = $4 AND m.user_id > $5 ORDER BY m.user_id LIMIT $6`, conv, seq, sender, read, after, limit)
	if err != nil {
		return p, fmt.Errorf("list receipts: %w", err)
	}
	p.Markers, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.ReadMarker, error) {
		var user uuid.UUID
		var readSeq int64
		if err := r.Scan(&user, &readSeq); err != nil {
			return nil, err
		}
		return &chatv1.ReadMarker{ConversationId: conv.String(), UserId: user.String(), ReadSeq: uint64(readSeq)}, nil
	})
	if err != nil {
		return p, fmt.Errorf("list receipts: %w", err)
	}
	return p, nil
}

func (s *ChatStore) DeliveryState(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID) (uint32, []*chatv1.MemberDelivery, error) {
	var members uint32
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM members m WHERE `+audience,
		conv, seq, sender).Scan(&members); err != nil {
		return 0, nil, fmt.Errorf("count audience: %w", err)
	}
	rows, err := s.db.Query(ctx, `SELECT d.user_id::text, array_agg(d.device_id::text ORDER BY d.device_id) FROM deliveries d
		JOIN members m ON m.conversation_id = d.conversation_id AND m.user_id = d.user_id AND m.left_seq IS NULL AND m.joined_seq < $2
		WHERE d.conversation_id = $1 AND d.delivered_seq >= $2 AND d.user_id <> $3
		GROUP BY d.user_id ORDER BY d.user_id LIMIT 10000`, conv, seq, sender)
	if err != nil {
		return 0, nil, fmt.Errorf("deliveries: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.MemberDelivery, error) {
		d := &chatv1.MemberDelivery{}
		return d, r.Scan(&d.UserId, &d.DeliveredDeviceIds)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("deliveries: %w", err)
	}
	return members, ds, nil
}

func (s *ChatStore) ReportDeliveries(ctx context.Context, ds []chat.Delivery) error {
	convs := make([]uuid.UUID, len(ds))
	users := make([]uuid.UUID, len(ds))
	devices := make([]uuid.UUID, len(ds))
	seqs := make([]int64, len(ds))
	for i, d := range ds {
		convs[i], users[i], devices[i], seqs[i] = d.Conv, d.User, d.Device, d.Seq
	}
	// Reports about conversations a device never was in are dropped by the
	// join.
	if _, err := s.db.Exec(ctx, `
		INSERT INTO deliveries (conversation_id, user_id, device_id, delivered_seq)
		SELECT a.conv, a.usr, a.dev, max(a.seq) FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[]) AS a(conv, usr, dev, seq)
		JOIN members m ON m.conversation_id = a.conv AND m.user_id = a.usr
		GROUP BY a.conv, a.usr, a.dev
		ON CONFLICT (conversation_id, user_id, device_id) DO UPDATE
		SET delivered_seq = greatest(deliveries.delivered_seq, excluded.delivered_seq), update_time = now()`,
		convs, users, devices, seqs); err != nil {
		return fmt.Errorf("report deliveries: %w", err)
	}
	return nil
}

func (s *ChatStore) Related(ctx context.Context, viewer uuid.UUID, ids []uuid.UUID) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT u::text FROM unnest($2::uuid[]) AS u WHERE u = $1
		OR EXISTS (SELECT 1 FROM contacts WHERE owner_id = $1 AND user_id = u)
		OR EXISTS (SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
			WHERE a.user_id = $1 AND a.left_seq IS NULL AND b.user_id = u AND b.left_seq IS NULL)`, viewer, ids)
	if err != nil {
		return nil, fmt.Errorf("filter related: %w", err)
	}
	related, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("filter related: %w", err)
	}
	return related, nil
}

func (s *ChatStore) ListRoutes(ctx context.Context, users []uuid.UUID) ([]*chatv1.UserRoutes, error) {
	rows, err := s.db.Query(ctx, `
		SELECT u.id::text, coalesce(us.last_seq, 0), m.conversation_id::text, m.joined_seq, c.last_seq
		FROM users u
		LEFT JOIN user_streams us ON us.user_id = u.id
		LEFT JOIN (members m JOIN conversations c ON c.id = m.conversation_id AND c.type = 2)
			ON m.user_id = u.id AND m.left_seq IS NULL
		WHERE u.id = ANY($1::uuid[])`, users)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var res []*chatv1.UserRoutes
	byUser := map[string]*chatv1.UserRoutes{}
	var user, conv *string
	var userSeq int64
	var joined, last *int64
	if _, err := pgx.ForEachRow(rows, []any{&user, &userSeq, &conv, &joined, &last}, func() error {
		r := byUser[*user]
		if r == nil {
			r = &chatv1.UserRoutes{UserId: *user, UserSeq: uint64(userSeq)}
			byUser[*user] = r
			res = append(res, r)
		}
		if conv != nil {
			r.Groups = append(r.Groups, &chatv1.GroupMembership{ConversationId: *conv, JoinedSeq: uint64(*joined), LastSeq: uint64(*last)})
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return res, nil
}

// ReadEvents reads every range in one batch: one round trip.
func (s *ChatStore) ReadEvents(ctx context.Context, convs, users []chat.Range, limit int) ([][]chat.EventRow, [][]*chatv1.UserEvent, error) {
	batch := &pgx.Batch{}
	for _, r := range convs {
		batch.Queue(`SELECT `+eventColumns+` FROM events e WHERE e.conversation_id = $1 AND e.seq >= $2
			AND ($3 = 0 OR e.seq <= $3) ORDER BY e.seq LIMIT $4`, r.ID, r.From, r.To, limit)
	}
	for _, r := range users {
		batch.Queue(`SELECT seq, create_time, body FROM user_events WHERE user_id = $1 AND seq >= $2
			AND ($3 = 0 OR seq <= $3) ORDER BY seq LIMIT $4`, r.ID, r.From, r.To, limit)
	}
	br := s.db.SendBatch(ctx, batch)
	defer br.Close()
	convEvents := make([][]chat.EventRow, len(convs))
	for i := range convs {
		rows, err := br.Query()
		if err == nil {
			convEvents[i], err = collectEvents(rows)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read events: %w", err)
		}
	}
	userEvents := make([][]*chatv1.UserEvent, len(users))
	for i, r := range users {
		rows, err := br.Query()
		if err == nil {
			userEvents[i], err = collectUserEvents(rows, r.ID)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read user events: %w", err)
		}
	}
	return convEvents, userEvents, nil
}

// collectUserEvents decodes rows of (seq, create_time, body) of user.
func collectUserEvents(rows pgx.Rows, user uuid.UUID) ([]*chatv1.UserEvent, error) {
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

func (s *ChatStore) DirectChanges(ctx context.Context, users []uuid.UUID, since time.Time) ([]*chatv1.DirectChange, error) {
	rows, err := s.db.Query(ctx, `SELECT m.user_id::text, c.id::text, c.last_seq FROM members m
		JOIN conversations c ON c.id = m.conversation_id
		WHERE m.user_id = ANY($1::uuid[]) AND c.type = 1 AND c.update_time >= $2`, users, since)
	if err != nil {
		return nil, fmt.Errorf("list direct changes: %w", err)
	}
	var res []*chatv1.DirectChange
	var user, conv string
	var last int64
	if _, err := pgx.ForEachRow(rows, []any{&user, &conv, &last}, func() error {
		res = append(res, &chatv1.DirectChange{UserId: user, ConversationId: conv, LastSeq: uint64(last)})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list direct changes: %w", err)
	}
	return res, nil
}
