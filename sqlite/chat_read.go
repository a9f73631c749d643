package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/chatsql"
	"github.com/wagglechat/waggle/services/chat"
)

// The chat store's reads outside transactions: each runs in one read
// snapshot.

// read runs fn in a read transaction. No row is chat.ErrNotFound; other
// errors but the chat sentinels are wrapped with op.
func (s *ChatStore) read(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	err := s.db.Read(ctx, fn)
	switch {
	case err == nil, errors.Is(err, chat.ErrNotFound), errors.Is(err, chat.ErrBlocked):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return chat.ErrNotFound
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (s *ChatStore) CanWrite(ctx context.Context, conv, user uuid.UUID) (count int, err error) {
	err = s.read(ctx, "check writer", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT c.member_count FROM conversations c WHERE c.id = $1 AND `+canWrite,
			conv, user).Scan(&count)
		if errors.Is(err, sql.ErrNoRows) {
			return whyRefused(ctx, tx, conv, user)
		}
		return err
	})
	return count, err
}

func (s *ChatStore) MessageByClientID(ctx context.Context, conv, sender uuid.UUID, clientMsgID string) (r chat.EventRow, err error) {
	err = s.read(ctx, "find client_msg_id", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events e
			WHERE e.conversation_id = $1 AND e.actor_id = $2 AND e.client_msg_id = $3`, conv, sender, clientMsgID).Scan(eventFields(&r)...)
	})
	return r, err
}

func (s *ChatStore) Message(ctx context.Context, conv, msgID, viewer uuid.UUID) (r chat.EventRow, err error) {
	err = s.read(ctx, "find message", func(tx *sql.Tx) (err error) {
		r, err = findMessage(ctx, tx, conv, msgID, viewer)
		return err
	})
	return r, err
}

// unreadFilter selects, for member m, the events u that count as unread
// (chat.ConversationRow.Unread). Counts are derived from the sequence and
// the marker on every read, so they cannot drift.
const unreadFilter = `u.kind = 1 AND u.seq > max(m.read_seq, m.joined_seq)
	AND (m.left_seq IS NULL OR u.seq <= m.left_seq) AND u.actor_id <> m.user_id AND u.recall_time IS NULL
	AND NOT EXISTS (SELECT 1 FROM hidden_messages h
		WHERE h.user_id = m.user_id AND h.conversation_id = u.conversation_id AND h.message_seq = u.seq)`

// conversationQuery reads conversations as member $1 sees them, with the
// newest message the member sees and has not hidden (last, if any).
var conversationQuery = `
	SELECT c.id, c.type, c.title, c.last_seq, c.member_count, c.create_time, c.update_time,
		m.role, m.joined_seq, m.join_time, m.read_seq, m.muted,
		(SELECT count(*) FROM events u WHERE u.conversation_id = c.id AND ` + unreadFilter + `),
		(SELECT p.user_id FROM members p WHERE c.type = 1 AND p.conversation_id = c.id AND p.user_id <> m.user_id),
		` + strings.ReplaceAll(eventColumns, "e.", "last.") + `
	FROM members m JOIN conversations c ON c.id = m.conversation_id
	LEFT JOIN events last ON last.conversation_id = c.id AND last.seq = (
		SELECT e.seq FROM events e
		WHERE e.conversation_id = c.id AND e.kind = 1 AND e.seq > m.joined_seq AND ` + chatsql.NotHidden + `
		ORDER BY e.seq DESC LIMIT 1)
	WHERE m.user_id = $1 AND m.left_seq IS NULL`

func scanConversation(row interface{ Scan(...any) error }) (chat.ConversationRow, error) {
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
	err := row.Scan(&c.ID, &c.Type, &c.Title, &c.LastSeq, &c.MemberCount, scanTime(&c.Created), scanTime(&c.Updated),
		&c.Role, &c.JoinedSeq, scanTime(&c.JoinTime), &c.ReadSeq, &c.Muted, &c.Unread, &c.Peer,
		&last.convID, &last.seq, &last.kind, &last.actor, &last.device, scanNullTime(&last.created), &last.body,
		&last.messageID, &last.clientMsgID, scanNullTime(&last.editTime), scanNullTime(&last.recallTime))
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

func (s *ChatStore) Conversation(ctx context.Context, viewer, conv uuid.UUID) (c chat.ConversationRow, err error) {
	err = s.read(ctx, "get conversation", func(tx *sql.Tx) (err error) {
		c, err = scanConversation(tx.QueryRowContext(ctx, conversationQuery+` AND c.id = $2`, viewer, conv))
		return err
	})
	return c, err
}

func (s *ChatStore) ListConversations(ctx context.Context, viewer uuid.UUID, beforeTime time.Time, beforeID uuid.UUID, limit int) (convs []chat.ConversationRow, err error) {
	err = s.read(ctx, "list conversations", func(tx *sql.Tx) (err error) {
		convs, err = queryAll(ctx, tx, func(r *sql.Rows) (chat.ConversationRow, error) { return scanConversation(r) },
			conversationQuery+` AND (c.update_time, c.id) < ($2, $3) ORDER BY c.update_time DESC, c.id DESC LIMIT $4`,
			viewer, micros(beforeTime), beforeID, limit)
		return err
	})
	return convs, err
}

func (s *ChatStore) Unread(ctx context.Context, user, conv uuid.UUID) (n uint64, err error) {
	err = s.read(ctx, "unread", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT count(*) FROM members m JOIN events u ON u.conversation_id = m.conversation_id
			WHERE m.user_id = $1 AND m.conversation_id = $2 AND `+unreadFilter, user, conv).Scan(&n)
	})
	return n, err
}

func (s *ChatStore) Badge(ctx context.Context, user uuid.UUID) (n uint64, err error) {
	err = s.read(ctx, "badge", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT count(*) FROM members m JOIN events u ON u.conversation_id = m.conversation_id
			WHERE m.user_id = $1 AND m.left_seq IS NULL AND NOT m.muted AND `+unreadFilter, user).Scan(&n)
	})
	return n, err
}

func (s *ChatStore) ListMembers(ctx context.Context, conv, viewer, after uuid.UUID, limit int) (members []*chatv1.Member, err error) {
	err = s.read(ctx, "list members", func(tx *sql.Tx) (err error) {
		members, err = queryAll(ctx, tx, func(r *sql.Rows) (*chatv1.Member, error) {
			var m chatv1.Member
			var user uuid.UUID
			var joined time.Time
			if err := r.Scan(&user, &m.Role, &m.JoinedSeq, scanTime(&joined), &m.ReadSeq, &m.Muted); err != nil {
				return nil, err
			}
			m.UserId, m.JoinTime = user.String(), timestamppb.New(joined)
			return &m, nil
		}, `
			SELECT m.user_id, m.role, m.joined_seq, m.join_time, m.read_seq, m.muted AND m.user_id = $2
			FROM members m WHERE m.conversation_id = $1 AND m.left_seq IS NULL AND m.user_id > $3
				AND EXISTS (SELECT 1 FROM members me WHERE me.conversation_id = $1 AND me.user_id = $2 AND me.left_seq IS NULL)
			ORDER BY m.user_id LIMIT $4`, conv, viewer, after, limit)
		return err
	})
	return members, err
}

func (s *ChatStore) Span(ctx context.Context, conv, user uuid.UUID) (joined int64, left *int64, err error) {
	err = s.read(ctx, "read membership", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT joined_seq, left_seq FROM members
			WHERE conversation_id = $1 AND user_id = $2`, conv, user).Scan(&joined, &left)
	})
	return joined, left, err
}

func (s *ChatStore) Messages(ctx context.Context, conv, viewer uuid.UUID, lo, hi int64, forward bool, limit int) (found []chat.EventRow, err error) {
	order := "DESC"
	if forward {
		order = "ASC"
	}
	err = s.read(ctx, "list messages", func(tx *sql.Tx) (err error) {
		found, err = queryAll(ctx, tx, scanEvent, `SELECT `+eventColumns+` FROM events e
			JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $5
			WHERE e.conversation_id = $1 AND e.kind = 1 AND e.seq BETWEEN $2 AND $3 AND `+chatsql.NotHidden+`
			ORDER BY e.seq `+order+` LIMIT $4`, conv, lo, hi, limit, viewer)
		return err
	})
	return found, err
}

func (s *ChatStore) MessageChanges(ctx context.Context, conv uuid.UUID, targets []int64) (changes []chat.Change, err error) {
	err = s.read(ctx, "message changes", func(tx *sql.Tx) (err error) {
		changes, err = queryAll(ctx, tx, func(r *sql.Rows) (chat.Change, error) {
			var c chat.Change
			return c, r.Scan(eventFields(&c.EventRow, &c.Target, &c.Prev)...)
		}, `SELECT `+eventColumns+`, e.target_seq, e.prev_body FROM events e
			WHERE e.conversation_id = $1 AND e.target_seq IN (SELECT value FROM json_each($2)) ORDER BY e.seq`,
			conv, jsonList(targets))
		return err
	})
	return changes, err
}

func (s *ChatStore) Reactions(ctx context.Context, conv, viewer uuid.UUID, seqs []int64) (counts []chat.ReactionCount, err error) {
	err = s.read(ctx, "reactions", func(tx *sql.Tx) (err error) {
		// A transaction's reactions share a time; rowid orders them.
		counts, err = queryAll(ctx, tx, func(r *sql.Rows) (chat.ReactionCount, error) {
			var c chat.ReactionCount
			return c, r.Scan(&c.Seq, &c.Emoji, &c.Count, &c.Mine)
		}, `SELECT message_seq, emoji, count(*), max(user_id = $3) FROM reactions
			WHERE conversation_id = $1 AND message_seq IN (SELECT value FROM json_each($2))
			GROUP BY message_seq, emoji ORDER BY message_seq, min(create_time), min(rowid)`,
			conv, jsonList(seqs), viewer)
		return err
	})
	return counts, err
}

func (s *ChatStore) ReactionUsers(ctx context.Context, conv uuid.UUID, seq int64, emoji string, after uuid.UUID, limit int) (users []uuid.UUID, err error) {
	err = s.read(ctx, "list reactions", func(tx *sql.Tx) (err error) {
		users, err = queryAll(ctx, tx, scanOne[uuid.UUID], `SELECT user_id FROM reactions
			WHERE conversation_id = $1 AND message_seq = $2 AND emoji = $3 AND user_id > $4 ORDER BY user_id LIMIT $5`,
			conv, seq, emoji, after, limit)
		return err
	})
	return users, err
}

func (s *ChatStore) MessageSender(ctx context.Context, conv, viewer uuid.UUID, seq int64) (sender uuid.UUID, err error) {
	err = s.read(ctx, "find message", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT e.actor_id FROM events e
			JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3
			WHERE e.conversation_id = $1 AND e.seq = $2 AND e.kind = 1 AND e.seq > m.joined_seq
				AND (m.left_seq IS NULL OR e.seq <= m.left_seq)`, conv, seq, viewer).Scan(&sender)
	})
	return sender, err
}

// audience is who a message at $2 by $3 in $1 is for (chat.ReceiptPage).
const audience = `m.conversation_id = $1 AND m.left_seq IS NULL AND m.joined_seq < $2 AND m.user_id <> $3`

func (s *ChatStore) ReadReceipts(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID, read bool, after uuid.UUID, limit int) (p chat.ReceiptPage, err error) {
	err = s.read(ctx, "read receipts", func(tx *sql.Tx) (err error) {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE m.read_seq >= $2), count(*) FILTER (WHERE m.read_seq < $2)
			FROM members m WHERE `+audience, conv, seq, sender).Scan(&p.Read, &p.Unread); err != nil {
			return err
		}
		p.Markers, err = queryAll(ctx, tx, func(r *sql.Rows) (*chatv1.ReadMarker, error) {
			var user uuid.UUID
			var readSeq int64
			if err := r.Scan(&user, &readSeq); err != nil {
				return nil, err
			}
			return &chatv1.ReadMarker{ConversationId: conv.String(), UserId: user.String(), ReadSeq: uint64(readSeq)}, nil
		}, `SELECT m.user_id, m.read_seq FROM members m WHERE `+audience+`
			AND (m.read_seq >= $2) = $4 AND m.user_id > $5 ORDER BY m.user_id LIMIT $6`, conv, seq, sender, read, after, limit)
		return err
	})
	return p, err
}

func (s *ChatStore) DeliveryState(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID) (members uint32, ds []*chatv1.MemberDelivery, err error) {
	err = s.read(ctx, "delivery state", func(tx *sql.Tx) (err error) {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM members m WHERE `+audience,
			conv, seq, sender).Scan(&members); err != nil {
			return err
		}
		ds, err = queryAll(ctx, tx, func(r *sql.Rows) (*chatv1.MemberDelivery, error) {
			d := &chatv1.MemberDelivery{}
			var devices string
			if err := r.Scan(&d.UserId, &devices); err != nil {
				return nil, err
			}
			return d, json.Unmarshal([]byte(devices), &d.DeliveredDeviceIds)
		}, `SELECT d.user_id, json_group_array(d.device_id ORDER BY d.device_id) FROM deliveries d
			JOIN members m ON m.conversation_id = d.conversation_id AND m.user_id = d.user_id AND m.left_seq IS NULL AND m.joined_seq < $2
			WHERE d.conversation_id = $1 AND d.delivered_seq >= $2 AND d.user_id <> $3
			GROUP BY d.user_id ORDER BY d.user_id LIMIT 10000`, conv, seq, sender)
		return err
	})
	return members, ds, err
}

func (s *ChatStore) ReportDeliveries(ctx context.Context, ds []chat.Delivery) error {
	type report struct {
		Conv   uuid.UUID `json:"c"`
		User   uuid.UUID `json:"u"`
		Device uuid.UUID `json:"d"`
		Seq    int64     `json:"s"`
	}
	reports := make([]report, len(ds))
	for i, d := range ds {
		reports[i] = report{d.Conv, d.User, d.Device, d.Seq}
	}
	list, err := json.Marshal(reports)
	if err != nil {
		return fmt.Errorf("report deliveries: %w", err)
	}
	err = s.db.Write(ctx, func(tx *Tx) error {
		// Reports about conversations a device never was in are dropped by
		// the join. WHERE true: see AddMembers.
		_, err := tx.ExecContext(ctx, `
			INSERT INTO deliveries (conversation_id, user_id, device_id, delivered_seq, update_time)
			SELECT a.conv, a.usr, a.dev, max(a.seq), $2 FROM (
				SELECT j.value ->> 'c' AS conv, j.value ->> 'u' AS usr, j.value ->> 'd' AS dev, j.value ->> 's' AS seq
				FROM json_each($1) j) a
			JOIN members m ON m.conversation_id = a.conv AND m.user_id = a.usr
			WHERE true
			GROUP BY a.conv, a.usr, a.dev
			ON CONFLICT (conversation_id, user_id, device_id) DO UPDATE
			SET delivered_seq = max(delivered_seq, excluded.delivered_seq), update_time = excluded.update_time`,
			string(list), micros(txTime()))
		return err
	})
	if err != nil {
		return fmt.Errorf("report deliveries: %w", err)
	}
	return nil
}

func (s *ChatStore) Related(ctx context.Context, viewer uuid.UUID, ids []uuid.UUID) (related []string, err error) {
	err = s.read(ctx, "filter related", func(tx *sql.Tx) (err error) {
		related, err = queryAll(ctx, tx, scanOne[string], `SELECT j.value FROM json_each($2) j WHERE j.value = $1
			OR EXISTS (SELECT 1 FROM contacts WHERE owner_id = $1 AND user_id = j.value)
			OR EXISTS (SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
				WHERE a.user_id = $1 AND a.left_seq IS NULL AND b.user_id = j.value AND b.left_seq IS NULL)`,
			viewer, jsonList(ids))
		return err
	})
	return related, err
}

func (s *ChatStore) ListRoutes(ctx context.Context, users []uuid.UUID) ([]*chatv1.UserRoutes, error) {
	type route struct {
		user, conv   *string
		userSeq      int64
		joined, last *int64
	}
	var routes []route
	err := s.read(ctx, "list routes", func(tx *sql.Tx) (err error) {
		routes, err = queryAll(ctx, tx, func(r *sql.Rows) (route, error) {
			var rt route
			return rt, r.Scan(&rt.user, &rt.userSeq, &rt.conv, &rt.joined, &rt.last)
		}, `
			SELECT u.id, coalesce(us.last_seq, 0), m.conversation_id, m.joined_seq, c.last_seq
			FROM users u
			LEFT JOIN user_streams us ON us.user_id = u.id
			LEFT JOIN (members m JOIN conversations c ON c.id = m.conversation_id AND c.type = 2)
				ON m.user_id = u.id AND m.left_seq IS NULL
			WHERE u.id IN (SELECT value FROM json_each($1))`, jsonList(users))
		return err
	})
	if err != nil {
		return nil, err
	}
	var res []*chatv1.UserRoutes
	byUser := map[string]*chatv1.UserRoutes{}
	for _, rt := range routes {
		r := byUser[*rt.user]
		if r == nil {
			r = &chatv1.UserRoutes{UserId: *rt.user, UserSeq: uint64(rt.userSeq)}
			byUser[*rt.user] = r
			res = append(res, r)
		}
		if rt.conv != nil {
			r.Groups = append(r.Groups, &chatv1.GroupMembership{ConversationId: *rt.conv, JoinedSeq: uint64(*rt.joined), LastSeq: uint64(*rt.last)})
		}
	}
	return res, nil
}

// ReadEvents reads every range in one snapshot.
func (s *ChatStore) ReadEvents(ctx context.Context, convs, users []chat.Range, limit int) ([][]chat.EventRow, [][]*chatv1.UserEvent, error) {
	convEvents := make([][]chat.EventRow, len(convs))
	userEvents := make([][]*chatv1.UserEvent, len(users))
	err := s.read(ctx, "read events", func(tx *sql.Tx) (err error) {
		for i, r := range convs {
			if convEvents[i], err = queryAll(ctx, tx, scanEvent, `SELECT `+eventColumns+` FROM events e
				WHERE e.conversation_id = $1 AND e.seq >= $2 AND ($3 = 0 OR e.seq <= $3) ORDER BY e.seq LIMIT $4`,
				r.ID, r.From, r.To, limit); err != nil {
				return err
			}
		}
		for i, r := range users {
			if userEvents[i], err = readUserEvents(ctx, tx, r.ID, r.From-1, r.To, limit); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return convEvents, userEvents, nil
}

// readUserEvents reads up to limit of user's own events with seq above
// after and at most to (0: no end), in seq order.
func readUserEvents(ctx context.Context, tx *sql.Tx, user uuid.UUID, after, to int64, limit int) ([]*chatv1.UserEvent, error) {
	return queryAll(ctx, tx, func(r *sql.Rows) (*chatv1.UserEvent, error) {
		var seq int64
		var at time.Time
		var body []byte
		if err := r.Scan(&seq, scanTime(&at), &body); err != nil {
			return nil, err
		}
		return decodeUserEvent(user, seq, at, body)
	}, `SELECT seq, create_time, body FROM user_events WHERE user_id = $1 AND seq > $2 AND ($3 = 0 OR seq <= $3)
		ORDER BY seq LIMIT $4`, user, after, to, limit)
}

func (s *ChatStore) DirectChanges(ctx context.Context, users []uuid.UUID, since time.Time) ([]*chatv1.DirectChange, error) {
	var res []*chatv1.DirectChange
	err := s.read(ctx, "list direct changes", func(tx *sql.Tx) (err error) {
		res, err = queryAll(ctx, tx, func(r *sql.Rows) (*chatv1.DirectChange, error) {
			c := &chatv1.DirectChange{}
			return c, r.Scan(&c.UserId, &c.ConversationId, &c.LastSeq)
		}, `SELECT m.user_id, c.id, c.last_seq FROM members m
			JOIN conversations c ON c.id = m.conversation_id
			WHERE m.user_id IN (SELECT value FROM json_each($1)) AND c.type = 1 AND c.update_time >= $2`,
			jsonList(users), micros(since))
		return err
	})
	return res, err
}
