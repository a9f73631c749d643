package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/chatsql"
	"github.com/wagglechat/waggle/services/chat"
)

// ChatStore is the chat service's storage on the embedded database
// (chat.Store).
//
// Locks: every write transaction holds the database's one write lock from
// its BEGIN IMMEDIATE to its end, so writers never interleave. The locks
// chat.Tx promises (a conversation's write lock, a member's or a message's
// row lock) are all held by then; the methods that take them in Postgres
// only read here. Reads run on the read pool, each in one snapshot.
//
// Times are the transaction's: taken once, in Go, after the write lock is
// held, so they increase in commit order.
type ChatStore struct{ db *DB }

var _ chat.Store = (*ChatStore)(nil)

// NewChatStore returns the chat store on db.
func NewChatStore(db *DB) *ChatStore { return &ChatStore{db: db} }

// InTx runs fn in one write transaction.
func (s *ChatStore) InTx(ctx context.Context, fn func(chat.Tx) error) error {
	return s.db.Write(ctx, func(tx *Tx) error { return fn(&chatTx{tx: tx, now: txTime()}) })
}

// chatTx is chat.Tx on a write transaction.
type chatTx struct {
	tx  *Tx
	now time.Time
}

// canWrite is the condition, on conversations c, that user $2 may write
// (chat.Store's terms).
var canWrite = chatsql.CanWrite("$2")

// whyRefused tells a write that was refused why: chat.ErrBlocked if the
// other member of a direct conversation blocked the writer, else
// chat.ErrNotFound.
func whyRefused(ctx context.Context, q querier, conv, writer uuid.UUID) error {
	var blocked bool
	err := q.QueryRowContext(ctx, chatsql.BlockedWriter, conv, writer).Scan(&blocked)
	switch {
	case err != nil:
		return fmt.Errorf("check block: %w", err)
	case blocked:
		return chat.ErrBlocked
	}
	return chat.ErrNotFound
}

// notFound maps sql.ErrNoRows to chat.ErrNotFound and wraps other errors.
func notFound(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return chat.ErrNotFound
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (t *chatTx) MissingUser(ctx context.Context, ids []uuid.UUID) (uuid.UUID, error) {
	var missing uuid.UUID
	err := t.tx.QueryRowContext(ctx, `SELECT j.value FROM json_each($1) j
		WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = j.value) ORDER BY j.key LIMIT 1`, jsonList(ids)).Scan(&missing)
	if errors.Is(err, sql.ErrNoRows) {
		return uuid.Nil, nil
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("check users: %w", err)
	}
	return missing, nil
}

func (t *chatTx) IsBlockedBy(ctx context.Context, user, by uuid.UUID) (bool, error) {
	return isBlockedBy(ctx, t.tx, user, by)
}

// directKey is the SQL naming the pair the expressions a and b give, either way round:
// "<smaller id>:<larger id>". It is unique in the table, so the pair has
// one conversation.
func directKey(a, b string) string {
	return `min(` + a + `, ` + b + `) || ':' || max(` + a + `, ` + b + `)`
}

func (t *chatTx) CreateDirect(ctx context.Context, id, a, b uuid.UUID) (uuid.UUID, bool, error) {
	change, err := t.tx.ChangeSeq(ctx)
	if err != nil {
		return uuid.Nil, false, err
	}
	var conv uuid.UUID
	err = t.tx.QueryRowContext(ctx, `
		INSERT INTO conversations (id, type, direct_key, member_count, change_seq, create_time, update_time)
		VALUES ($1, $2, `+directKey("$3", "$4")+`, 2, $5, $6, $6)
		ON CONFLICT (direct_key) DO NOTHING RETURNING id`,
		id, chatv1.ConversationType_CONVERSATION_TYPE_DIRECT, a, b, change, micros(t.now)).Scan(&conv)
	if errors.Is(err, sql.ErrNoRows) {
		if err := t.tx.QueryRowContext(ctx, `SELECT id FROM conversations WHERE direct_key = `+directKey("$1", "$2"),
			a, b).Scan(&conv); err != nil {
			return uuid.Nil, false, fmt.Errorf("find conversation: %w", err)
		}
		return conv, false, nil
	}
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("insert conversation: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq, join_time)
		VALUES ($1, $2, $4, 0, $5), ($1, $3, $4, 0, $5)`, conv, a, b, chatv1.MemberRole_MEMBER_ROLE_MEMBER, micros(t.now)); err != nil {
		return uuid.Nil, false, fmt.Errorf("insert members: %w", err)
	}
	return conv, true, nil
}

func (t *chatTx) CreateGroup(ctx context.Context, id uuid.UUID, title string, owner uuid.UUID, members []uuid.UUID) error {
	change, err := t.tx.ChangeSeq(ctx)
	if err != nil {
		return err
	}
	if _, err := t.tx.ExecContext(ctx, `
		INSERT INTO conversations (id, type, title, member_count, change_seq, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, $6)`,
		id, chatv1.ConversationType_CONVERSATION_TYPE_GROUP, title, len(members)+1, change, micros(t.now)); err != nil {
		return fmt.Errorf("insert conversation: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq, join_time)
		SELECT $1, j.value, CASE WHEN j.value = $2 THEN $3 ELSE $4 END, 0, $6 FROM json_each($5) j`,
		id, owner, chatv1.MemberRole_MEMBER_ROLE_OWNER, chatv1.MemberRole_MEMBER_ROLE_MEMBER,
		jsonList(append([]uuid.UUID{owner}, members...)), micros(t.now)); err != nil {
		return fmt.Errorf("insert members: %w", err)
	}
	return nil
}

// AppendEvent takes the conversation's next seq. The transaction holds the
// write lock already, so the membership check and the bump see the latest
// commit, and seqs are gap-free and in commit order.
func (t *chatTx) AppendEvent(ctx context.Context, conv uuid.UUID, ev chat.NewEvent) (int64, time.Time, error) {
	change, err := t.tx.ChangeSeq(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	var seq int64
	err = t.tx.QueryRowContext(ctx, `
		UPDATE conversations AS c SET last_seq = last_seq + 1, change_seq = $4, update_time = $5
		WHERE c.id = $1 AND (NOT $3 OR (`+canWrite+`))
		RETURNING last_seq`, conv, ev.Actor, ev.MustWrite, change, micros(t.now)).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, whyRefused(ctx, t.tx, conv, ev.Actor)
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("bump seq: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `
		INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, change_seq, create_time, body, target_seq, prev_body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		conv, seq, ev.Kind, ev.Actor, ev.Device, change, micros(t.now), ev.Body, ev.Target, ev.Prev); err != nil {
		return 0, time.Time{}, fmt.Errorf("insert event: %w", err)
	}
	return seq, t.now, nil
}

func (t *chatTx) AppendUserEvent(ctx context.Context, user uuid.UUID, body *chatv1.UserEvent) (*chatv1.UserEvent, error) {
	return appendUserEvent(ctx, t.tx, t.now, user, body)
}

func (t *chatTx) LockMembership(ctx context.Context, conv, user uuid.UUID) (chat.Membership, error) {
	var m chat.Membership
	err := t.tx.QueryRowContext(ctx, `SELECT c.type, m.role, c.member_count FROM conversations c
		JOIN members m ON m.conversation_id = c.id AND m.user_id = $2 AND m.left_seq IS NULL
		WHERE c.id = $1`, conv, user).Scan(&m.Type, &m.Role, &m.Count)
	return m, notFound("read membership", err)
}

func (t *chatTx) MemberRole(ctx context.Context, conv, user uuid.UUID) (chatv1.MemberRole, error) {
	var role chatv1.MemberRole
	err := t.tx.QueryRowContext(ctx, `SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`,
		conv, user).Scan(&role)
	return role, notFound("read role", err)
}

func (t *chatTx) NotMembers(ctx context.Context, conv uuid.UUID, ids []uuid.UUID) ([]uuid.UUID, error) {
	fresh, err := queryAll(ctx, t.tx.Tx, scanOne[uuid.UUID], `SELECT j.value FROM json_each($2) j WHERE NOT EXISTS (
		SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = j.value AND left_seq IS NULL) ORDER BY j.key`,
		conv, jsonList(ids))
	if err != nil {
		return nil, fmt.Errorf("find new members: %w", err)
	}
	return fresh, nil
}

func (t *chatTx) AddMembers(ctx context.Context, conv uuid.UUID, users []uuid.UUID, joined int64) error {
	// WHERE true: without it SQLite would read ON CONFLICT as a join's ON.
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq, read_seq, join_time)
		SELECT $1, j.value, $3, $4, $4, $5 FROM json_each($2) j WHERE true
		ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, joined_seq = excluded.joined_seq,
			read_seq = excluded.read_seq, left_seq = NULL, join_time = excluded.join_time`,
		conv, jsonList(users), chatv1.MemberRole_MEMBER_ROLE_MEMBER, joined, micros(t.now)); err != nil {
		return fmt.Errorf("insert members: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE conversations SET member_count = member_count + $2 WHERE id = $1`, conv, len(users)); err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	return nil
}

func (t *chatTx) RemoveMember(ctx context.Context, conv, user uuid.UUID, left int64) error {
	if _, err := t.tx.ExecContext(ctx, `UPDATE members SET left_seq = $3 WHERE conversation_id = $1 AND user_id = $2`,
		conv, user, left); err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE conversations SET member_count = member_count - 1 WHERE id = $1`, conv); err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	return nil
}

func (t *chatTx) SetRole(ctx context.Context, conv, user uuid.UUID, role chatv1.MemberRole) error {
	if _, err := t.tx.ExecContext(ctx, `UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2`, conv, user, role); err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	return nil
}

func (t *chatTx) SetTitle(ctx context.Context, conv uuid.UUID, title string) error {
	if _, err := t.tx.ExecContext(ctx, `UPDATE conversations SET title = $2 WHERE id = $1`, conv, title); err != nil {
		return fmt.Errorf("set title: %w", err)
	}
	return nil
}

func (t *chatTx) SetMuted(ctx context.Context, conv, user uuid.UUID, muted bool) (bool, error) {
	var was bool
	err := t.tx.QueryRowContext(ctx, `SELECT muted FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`,
		conv, user).Scan(&was)
	if err != nil || was == muted {
		return false, notFound("read membership", err)
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE members SET muted = $3 WHERE conversation_id = $1 AND user_id = $2`, conv, user, muted); err != nil {
		return false, fmt.Errorf("set muted: %w", err)
	}
	return true, nil
}

func (t *chatTx) LockReadState(ctx context.Context, conv, user uuid.UUID) (chat.ReadState, error) {
	r := chat.ReadState{Now: t.now}
	err := t.tx.QueryRowContext(ctx, `SELECT m.read_seq, c.last_seq, c.member_count FROM members m
		JOIN conversations c ON c.id = m.conversation_id
		WHERE m.conversation_id = $1 AND m.user_id = $2 AND m.left_seq IS NULL`,
		conv, user).Scan(&r.ReadSeq, &r.LastSeq, &r.MemberCount)
	return r, notFound("read read marker", err)
}

func (t *chatTx) SetReadSeq(ctx context.Context, conv, user uuid.UUID, seq int64) error {
	if _, err := t.tx.ExecContext(ctx, `UPDATE members SET read_seq = $3 WHERE conversation_id = $1 AND user_id = $2`,
		conv, user, seq); err != nil {
		return fmt.Errorf("set read seq: %w", err)
	}
	return nil
}

func (t *chatTx) LockMessage(ctx context.Context, conv, msgID, viewer uuid.UUID) (chat.EventRow, error) {
	r, err := findMessage(ctx, t.tx, conv, msgID, viewer)
	return r, notFound("find message", err)
}

// findMessage reads chat.Store.Message in q; no row is sql.ErrNoRows.
func findMessage(ctx context.Context, q querier, conv, msgID, viewer uuid.UUID) (chat.EventRow, error) {
	var r chat.EventRow
	err := q.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events e
		JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3 AND m.left_seq IS NULL
		WHERE e.conversation_id = $1 AND e.message_id = $2 AND e.seq > m.joined_seq`, conv, msgID, viewer).Scan(eventFields(&r)...)
	return r, err
}

func (t *chatTx) AddReaction(ctx context.Context, conv uuid.UUID, seq int64, emoji string, user uuid.UUID) (bool, error) {
	res, err := t.tx.ExecContext(ctx, `INSERT INTO reactions (conversation_id, message_seq, emoji, user_id, create_time)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, conv, seq, emoji, user, micros(t.now))
	return changedRows("add reaction", res, err)
}

func (t *chatTx) RemoveReaction(ctx context.Context, conv uuid.UUID, seq int64, emoji string, user uuid.UUID) (bool, error) {
	res, err := t.tx.ExecContext(ctx, `DELETE FROM reactions WHERE conversation_id = $1 AND message_seq = $2 AND emoji = $3 AND user_id = $4`,
		conv, seq, emoji, user)
	return changedRows("remove reaction", res, err)
}

// changedRows reports whether the statement that gave res, err changed a
// row.
func changedRows(op string, res sql.Result, err error) (bool, error) {
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	return n > 0, nil
}

func (t *chatTx) EditMessage(ctx context.Context, conv uuid.UUID, seq int64, body []byte) (time.Time, error) {
	if _, err := t.tx.ExecContext(ctx, `UPDATE events SET body = $3, edit_time = $4 WHERE conversation_id = $1 AND seq = $2`,
		conv, seq, body, micros(t.now)); err != nil {
		return time.Time{}, fmt.Errorf("edit message: %w", err)
	}
	return t.now, nil
}

func (t *chatTx) RecallMessage(ctx context.Context, conv uuid.UUID, seq int64, editBody []byte) error {
	if _, err := t.tx.ExecContext(ctx, `UPDATE events SET body = X'', recall_time = $3 WHERE conversation_id = $1 AND seq = $2`,
		conv, seq, micros(t.now)); err != nil {
		return fmt.Errorf("recall message: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `DELETE FROM reactions WHERE conversation_id = $1 AND message_seq = $2`, conv, seq); err != nil {
		return fmt.Errorf("recall reactions: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE events SET body = $3 WHERE conversation_id = $1 AND target_seq = $2 AND kind = $4`,
		conv, seq, editBody, chat.KindMessageEdited); err != nil {
		return fmt.Errorf("recall edits: %w", err)
	}
	return nil
}

func (t *chatTx) HideMessages(ctx context.Context, user, conv uuid.UUID, msgIDs []uuid.UUID) ([]uuid.UUID, error) {
	type found struct {
		seq int64
		id  uuid.UUID
	}
	// Messages the user can see in its history (up to its removal).
	msgs, err := queryAll(ctx, t.tx.Tx, func(r *sql.Rows) (found, error) {
		var m found
		return m, r.Scan(&m.seq, &m.id)
	}, `SELECT e.seq, e.message_id FROM events e
		JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3
		WHERE e.conversation_id = $1 AND e.message_id IN (SELECT value FROM json_each($2)) AND e.seq > m.joined_seq
			AND (m.left_seq IS NULL OR e.seq <= m.left_seq)`, conv, jsonList(msgIDs), user)
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
		res, err := t.tx.ExecContext(ctx, `INSERT INTO hidden_messages (user_id, conversation_id, message_seq) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, user, conv, m.seq)
		added, err := changedRows("hide message", res, err)
		if err != nil {
			return nil, err
		}
		if added {
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
	return append([]any{&r.Conv, &r.Seq, &r.Kind, &r.Actor, &r.Device, scanTime(&r.Created),
		&r.Body, &r.MessageID, &r.ClientMsgID, scanNullTime(&r.EditTime), scanNullTime(&r.RecallTime)}, extra...)
}

// scanEvent scans eventColumns.
func scanEvent(r *sql.Rows) (chat.EventRow, error) {
	var e chat.EventRow
	return e, r.Scan(eventFields(&e)...)
}

// scanOne scans a row of one column.
func scanOne[T any](r *sql.Rows) (T, error) {
	var v T
	return v, r.Scan(&v)
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
