package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/chatsql"
	"github.com/wagglechat/waggle/services/chat"
)

// ChatStore is the chat service's storage on Postgres (chat.Store). Writers
// of a conversation serialise on its row lock (FOR NO KEY UPDATE, so
// inserts of events referencing it are not blocked); sync uses the xid8
// watermark (chat_sync.go); sends are group-committed (chat_send.go).
type ChatStore struct {
	db    *pgxpool.Pool
	sends sendQueue
}

var _ chat.Store = (*ChatStore)(nil)

// NewChatStore returns the chat store on db.
func NewChatStore(db *pgxpool.Pool) *ChatStore { return &ChatStore{db: db} }

// InTx runs fn in a READ COMMITTED transaction.
func (s *ChatStore) InTx(ctx context.Context, fn func(chat.Tx) error) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return fn(chatTx{tx}) })
}

// chatTx is chat.Tx on a pgx transaction.
type chatTx struct{ tx pgx.Tx }

// lockConversation takes convID's row lock in a statement of its own.
// Checks that read other rows (membership, blocks) must run in a later
// statement: under READ COMMITTED a statement that waited for a lock still
// reads other tables as they were when it started, so a check in the
// locking statement could miss a removal that committed meanwhile.
const lockConversation = `SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE`

// canWrite is the condition, on conversations c, that user $2 may write
// (chat.Store's terms).
var canWrite = chatsql.CanWrite("$2")

// whyRefused tells a write that was refused why: chat.ErrBlocked if the
// other member of a direct conversation blocked the writer, else
// chat.ErrNotFound.
func whyRefused(ctx context.Context, q querier, convID, writer uuid.UUID) error {
	var blocked bool
	err := q.QueryRow(ctx, chatsql.BlockedWriter, convID, writer).Scan(&blocked)
	switch {
	case err != nil:
		return fmt.Errorf("check block: %w", err)
	case blocked:
		return chat.ErrBlocked
	}
	return chat.ErrNotFound
}

// notFound maps pgx.ErrNoRows to chat.ErrNotFound and wraps other errors.
func notFound(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.ErrNotFound
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (t chatTx) MissingUser(ctx context.Context, ids []uuid.UUID) (uuid.UUID, error) {
	if len(ids) == 0 {
		return uuid.Nil, nil
	}
	var missing uuid.UUID
	err := t.tx.QueryRow(ctx, `SELECT u FROM unnest($1::uuid[]) AS u WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = u) LIMIT 1`,
		ids).Scan(&missing)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, nil
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("check users: %w", err)
	}
	return missing, nil
}

func (t chatTx) IsBlockedBy(ctx context.Context, user, by uuid.UUID) (bool, error) {
	return isBlockedBy(ctx, t.tx, user, by)
}

// directKey names a pair, whichever way round: it is unique in the table,
// so two concurrent first calls still create one conversation.
func directKey(a, b uuid.UUID) string {
	lo, hi := a.String(), b.String()
	if hi < lo {
		lo, hi = hi, lo
	}
	return lo + ":" + hi
}

func (t chatTx) CreateDirect(ctx context.Context, id, a, b uuid.UUID) (uuid.UUID, bool, error) {
	key := directKey(a, b)
	var conv uuid.UUID
	err := t.tx.QueryRow(ctx, `INSERT INTO conversations (id, type, direct_key, member_count) VALUES ($1, $2, $3, 2)
		ON CONFLICT (direct_key) DO NOTHING RETURNING id`, id, chatv1.ConversationType_CONVERSATION_TYPE_DIRECT, key).Scan(&conv)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := t.tx.QueryRow(ctx, `SELECT id FROM conversations WHERE direct_key = $1`, key).Scan(&conv); err != nil {
			return uuid.Nil, false, fmt.Errorf("find conversation: %w", err)
		}
		return conv, false, nil
	}
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("insert conversation: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq)
		VALUES ($1, $2, $4, 0), ($1, $3, $4, 0)`, conv, a, b, chatv1.MemberRole_MEMBER_ROLE_MEMBER); err != nil {
		return uuid.Nil, false, fmt.Errorf("insert members: %w", err)
	}
	return conv, true, nil
}

func (t chatTx) CreateGroup(ctx context.Context, id uuid.UUID, title string, owner uuid.UUID, members []uuid.UUID) error {
	if _, err := t.tx.Exec(ctx, `INSERT INTO conversations (id, type, title, member_count) VALUES ($1, $2, $3, $4)`,
		id, chatv1.ConversationType_CONVERSATION_TYPE_GROUP, title, len(members)+1); err != nil {
		return fmt.Errorf("insert conversation: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq)
		SELECT $1, u, CASE WHEN u = $2 THEN $3::smallint ELSE $4::smallint END, 0 FROM unnest($5::uuid[]) AS u`,
		id, owner, chatv1.MemberRole_MEMBER_ROLE_OWNER, chatv1.MemberRole_MEMBER_ROLE_MEMBER, append([]uuid.UUID{owner}, members...)); err != nil {
		return fmt.Errorf("insert members: %w", err)
	}
	return nil
}

// AppendEvent locks the conversation, then takes its next seq. The row lock
// serialises writers of one conversation, so seqs are gap-free and in
// commit order.
func (t chatTx) AppendEvent(ctx context.Context, conv uuid.UUID, ev chat.NewEvent) (int64, time.Time, error) {
	if _, err := t.tx.Exec(ctx, lockConversation, conv); err != nil {
		return 0, time.Time{}, fmt.Errorf("lock conversation: %w", err)
	}
	var seq int64
	var at time.Time
	err := t.tx.QueryRow(ctx, `
		UPDATE conversations c SET last_seq = last_seq + 1, change_xid = pg_current_xact_id(), update_time = now()
		WHERE c.id = $1 AND (NOT $3 OR (`+canWrite+`))
		RETURNING last_seq, update_time`, conv, ev.Actor, ev.MustWrite).Scan(&seq, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, whyRefused(ctx, t.tx, conv, ev.Actor)
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("bump seq: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `
		INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, create_time, body, target_seq, prev_body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		conv, seq, ev.Kind, ev.Actor, ev.Device, at, ev.Body, ev.Target, ev.Prev); err != nil {
		return 0, time.Time{}, fmt.Errorf("insert event: %w", err)
	}
	return seq, at, nil
}

func (t chatTx) AppendUserEvent(ctx context.Context, user uuid.UUID, body *chatv1.UserEvent) (*chatv1.UserEvent, error) {
	return appendUserEvent(ctx, t.tx, user, body)
}

func (t chatTx) LockMembership(ctx context.Context, conv, user uuid.UUID) (chat.Membership, error) {
	var m chat.Membership
	if _, err := t.tx.Exec(ctx, lockConversation, conv); err != nil {
		return m, fmt.Errorf("lock conversation: %w", err)
	}
	err := t.tx.QueryRow(ctx, `SELECT c.type, m.role, c.member_count FROM conversations c
		JOIN members m ON m.conversation_id = c.id AND m.user_id = $2 AND m.left_seq IS NULL
		WHERE c.id = $1`, conv, user).Scan(&m.Type, &m.Role, &m.Count)
	return m, notFound("read membership", err)
}

func (t chatTx) MemberRole(ctx context.Context, conv, user uuid.UUID) (chatv1.MemberRole, error) {
	var role chatv1.MemberRole
	err := t.tx.QueryRow(ctx, `SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`,
		conv, user).Scan(&role)
	return role, notFound("read role", err)
}

func (t chatTx) NotMembers(ctx context.Context, conv uuid.UUID, ids []uuid.UUID) ([]uuid.UUID, error) {
	rows, err := t.tx.Query(ctx, `SELECT u FROM unnest($2::uuid[]) AS u WHERE NOT EXISTS (
		SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = u AND left_seq IS NULL)`, conv, ids)
	if err != nil {
		return nil, fmt.Errorf("find new members: %w", err)
	}
	fresh, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("find new members: %w", err)
	}
	return fresh, nil
}

func (t chatTx) AddMembers(ctx context.Context, conv uuid.UUID, users []uuid.UUID, joined int64) error {
	if _, err := t.tx.Exec(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq, read_seq)
		SELECT $1, u, $3, $4, $4 FROM unnest($2::uuid[]) AS u
		ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, joined_seq = excluded.joined_seq,
			read_seq = excluded.read_seq, left_seq = NULL, join_time = now()`,
		conv, users, chatv1.MemberRole_MEMBER_ROLE_MEMBER, joined); err != nil {
		return fmt.Errorf("insert members: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `UPDATE conversations SET member_count = member_count + $2 WHERE id = $1`, conv, len(users)); err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	return nil
}

func (t chatTx) RemoveMember(ctx context.Context, conv, user uuid.UUID, left int64) error {
	if _, err := t.tx.Exec(ctx, `UPDATE members SET left_seq = $3 WHERE conversation_id = $1 AND user_id = $2`,
		conv, user, left); err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `UPDATE conversations SET member_count = member_count - 1 WHERE id = $1`, conv); err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	return nil
}

func (t chatTx) SetRole(ctx context.Context, conv, user uuid.UUID, role chatv1.MemberRole) error {
	if _, err := t.tx.Exec(ctx, `UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2`, conv, user, role); err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	return nil
}

func (t chatTx) SetTitle(ctx context.Context, conv uuid.UUID, title string) error {
	if _, err := t.tx.Exec(ctx, `UPDATE conversations SET title = $2 WHERE id = $1`, conv, title); err != nil {
		return fmt.Errorf("set title: %w", err)
	}
	return nil
}

func (t chatTx) SetMuted(ctx context.Context, conv, user uuid.UUID, muted bool) (bool, error) {
	var was bool
	err := t.tx.QueryRow(ctx, `SELECT muted FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL FOR UPDATE`,
		conv, user).Scan(&was)
	if err != nil || was == muted {
		return false, notFound("lock membership", err)
	}
	if _, err := t.tx.Exec(ctx, `UPDATE members SET muted = $3 WHERE conversation_id = $1 AND user_id = $2`, conv, user, muted); err != nil {
		return false, fmt.Errorf("set muted: %w", err)
	}
	return true, nil
}

func (t chatTx) LockReadState(ctx context.Context, conv, user uuid.UUID) (chat.ReadState, error) {
	var r chat.ReadState
	err := t.tx.QueryRow(ctx, `SELECT m.read_seq, c.last_seq, c.member_count, now() FROM members m
		JOIN conversations c ON c.id = m.conversation_id
		WHERE m.conversation_id = $1 AND m.user_id = $2 AND m.left_seq IS NULL FOR UPDATE OF m`,
		conv, user).Scan(&r.ReadSeq, &r.LastSeq, &r.MemberCount, &r.Now)
	return r, notFound("lock read marker", err)
}

func (t chatTx) SetReadSeq(ctx context.Context, conv, user uuid.UUID, seq int64) error {
	if _, err := t.tx.Exec(ctx, `UPDATE members SET read_seq = $3 WHERE conversation_id = $1 AND user_id = $2`,
		conv, user, seq); err != nil {
		return fmt.Errorf("set read seq: %w", err)
	}
	return nil
}

// LockMessage locks the message row. Writers lock the message before the
// conversation (AppendEvent), and nothing locks them the other way round,
// so they cannot deadlock.
func (t chatTx) LockMessage(ctx context.Context, conv, msgID, viewer uuid.UUID) (chat.EventRow, error) {
	return findMessage(ctx, t.tx, conv, msgID, viewer, " FOR UPDATE OF e")
}

func findMessage(ctx context.Context, q querier, conv, msgID, viewer uuid.UUID, lock string) (chat.EventRow, error) {
	var r chat.EventRow
	err := q.QueryRow(ctx, `SELECT `+eventColumns+` FROM events e
		JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3 AND m.left_seq IS NULL
		WHERE e.conversation_id = $1 AND e.message_id = $2 AND e.seq > m.joined_seq`+lock, conv, msgID, viewer).Scan(eventFields(&r)...)
	return r, notFound("find message", err)
}

func (t chatTx) AddReaction(ctx context.Context, conv uuid.UUID, seq int64, emoji string, user uuid.UUID) (bool, error) {
	tag, err := t.tx.Exec(ctx, `INSERT INTO reactions (conversation_id, message_seq, emoji, user_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, conv, seq, emoji, user)
	if err != nil {
		return false, fmt.Errorf("add reaction: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

func (t chatTx) RemoveReaction(ctx context.Context, conv uuid.UUID, seq int64, emoji string, user uuid.UUID) (bool, error) {
	tag, err := t.tx.Exec(ctx, `DELETE FROM reactions WHERE conversation_id = $1 AND message_seq = $2 AND emoji = $3 AND user_id = $4`,
		conv, seq, emoji, user)
	if err != nil {
		return false, fmt.Errorf("remove reaction: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

func (t chatTx) EditMessage(ctx context.Context, conv uuid.UUID, seq int64, body []byte) (time.Time, error) {
	var at time.Time
	if err := t.tx.QueryRow(ctx, `UPDATE events SET body = $3, edit_time = now() WHERE conversation_id = $1 AND seq = $2 RETURNING edit_time`,
		conv, seq, body).Scan(&at); err != nil {
		return at, fmt.Errorf("edit message: %w", err)
	}
	return at, nil
}

func (t chatTx) RecallMessage(ctx context.Context, conv uuid.UUID, seq int64, editBody []byte) error {
	if _, err := t.tx.Exec(ctx, `UPDATE events SET body = '', recall_time = now() WHERE conversation_id = $1 AND seq = $2`,
		conv, seq); err != nil {
		return fmt.Errorf("recall message: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `DELETE FROM reactions WHERE conversation_id = $1 AND message_seq = $2`, conv, seq); err != nil {
		return fmt.Errorf("recall reactions: %w", err)
	}
	if _, err := t.tx.Exec(ctx, `UPDATE events SET body = $3 WHERE conversation_id = $1 AND target_seq = $2 AND kind = $4`,
		conv, seq, editBody, chat.KindMessageEdited); err != nil {
		return fmt.Errorf("recall edits: %w", err)
	}
	return nil
}

func (t chatTx) HideMessages(ctx context.Context, user, conv uuid.UUID, msgIDs []uuid.UUID) ([]uuid.UUID, error) {
	// Messages the user can see in its history (up to its removal).
	rows, err := t.tx.Query(ctx, `SELECT e.seq, e.message_id FROM events e
		JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3
		WHERE e.conversation_id = $1 AND e.message_id = ANY($2) AND e.seq > m.joined_seq
			AND (m.left_seq IS NULL OR e.seq <= m.left_seq)`, conv, msgIDs, user)
	if err != nil {
		return nil, fmt.Errorf("find messages: %w", err)
	}
	type found struct {
		seq int64
		id  uuid.UUID
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
		var m found
		return m, r.Scan(&m.seq, &m.id)
	})
	if err != nil {
		return nil, fmt.Errorf("find messages: %w", err)
	}
	distinct := make(map[uuid.UUID]bool, len(msgIDs))
	for _, id := range msgIDs {
		distinct[id] = true
	}
	if len(msgs) < len(distinct) {
		return nil, chat.ErrNotFound
	}
	var hidden []uuid.UUID
	for _, m := range msgs {
		tag, err := t.tx.Exec(ctx, `INSERT INTO hidden_messages (user_id, conversation_id, message_seq) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, user, conv, m.seq)
		if err != nil {
			return nil, fmt.Errorf("hide message: %w", err)
		}
		if tag.RowsAffected() > 0 {
			hidden = append(hidden, m.id)
		}
	}
	return hidden, nil
}

// eventColumns lists chat.EventRow's columns in eventFields' order.
const eventColumns = `e.conversation_id, e.seq, e.kind, e.actor_id, e.actor_device_id, e.create_time,
	e.body, e.message_id, e.client_msg_id, e.edit_time, e.recall_time`

// eventFields returns scan targets for eventColumns followed by extra.
func eventFields(r *chat.EventRow, extra ...any) []any {
	return append([]any{&r.Conv, &r.Seq, &r.Kind, &r.Actor, &r.Device, &r.Created,
		&r.Body, &r.MessageID, &r.ClientMsgID, &r.EditTime, &r.RecallTime}, extra...)
}

func collectEvents(rows pgx.Rows) ([]chat.EventRow, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.EventRow, error) {
		var r chat.EventRow
		return r, row.Scan(eventFields(&r)...)
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
