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

// Event kinds as stored in events.kind. Never renumber: rows keep them.
const (
	kindMessage             = 1
	kindMessageEdited       = 2
	kindMessageRecalled     = 3
	kindReactionAdded       = 4
	kindReactionRemoved     = 5
	kindConversationCreated = 6
	kindMembersAdded        = 7
	kindMemberRemoved       = 8
	kindConversationRenamed = 9
	kindMemberRoleChanged   = 10
)

func kindOf(ev *chatv1.Event) int16 {
	switch ev.Kind.(type) {
	case *chatv1.Event_Message:
		return kindMessage
	case *chatv1.Event_MessageEdited:
		return kindMessageEdited
	case *chatv1.Event_MessageRecalled:
		return kindMessageRecalled
	case *chatv1.Event_ReactionAdded:
		return kindReactionAdded
	case *chatv1.Event_ReactionRemoved:
		return kindReactionRemoved
	case *chatv1.Event_ConversationCreated:
		return kindConversationCreated
	case *chatv1.Event_MembersAdded:
		return kindMembersAdded
	case *chatv1.Event_MemberRemoved:
		return kindMemberRemoved
	case *chatv1.Event_ConversationRenamed:
		return kindConversationRenamed
	case *chatv1.Event_MemberRoleChanged:
		return kindMemberRoleChanged
	}
	panic(fmt.Sprintf("chat: event kind %T has no stored number", ev.Kind))
}

// targetOf is the seq of the message an event is about, or nil.
func targetOf(ev *chatv1.Event) *int64 {
	var seq uint64
	switch k := ev.Kind.(type) {
	case *chatv1.Event_MessageEdited:
		seq = k.MessageEdited.GetMessageSeq()
	case *chatv1.Event_MessageRecalled:
		seq = k.MessageRecalled.GetMessageSeq()
	case *chatv1.Event_ReactionAdded:
		seq = k.ReactionAdded.GetMessageSeq()
	case *chatv1.Event_ReactionRemoved:
		seq = k.ReactionRemoved.GetMessageSeq()
	default:
		return nil
	}
	target := int64(seq)
	return &target
}

// Committed is an event that is durably stored, handed to the Notifier.
type Committed struct {
	Event *chatv1.Event
	// SenderSessionID is the session that caused the event, if any; it
	// already has the event in its command's answer.
	SenderSessionID string
}

// lockConversation takes convID's row lock in a statement of its own.
// Checks that read other rows (membership, blocks) must run in a later
// statement: under READ COMMITTED a statement that waited for a lock still
// reads other tables as they were when it started, so a check in the
// locking statement could miss a removal that committed meanwhile.
const lockConversation = `SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE`

// canWrite is the condition, on conversations c, that user $2 may add an
// event: a current member, and not blocked by the other member of a direct
// conversation.
var canWrite = canWriteOf("$2")

// canWriteOf is canWrite for the user the SQL expression user names.
func canWriteOf(user string) string {
	return `EXISTS (SELECT 1 FROM members WHERE conversation_id = c.id AND user_id = ` + user + ` AND left_seq IS NULL)
	AND NOT (c.type = 1 AND EXISTS (SELECT 1 FROM members p JOIN blocks b ON b.blocker_id = p.user_id AND b.blocked_id = ` + user + `
		WHERE p.conversation_id = c.id AND p.user_id <> ` + user + `))`
}

// nextSeq takes the conversation's next seq in tx. The row lock serialises
// writers of one conversation, so seqs are gap-free and in commit order.
// Unless mustBeMember is false (the creation event), it fails when actor
// may not write (see whyRefused).
func nextSeq(ctx context.Context, tx pgx.Tx, convID, actor uuid.UUID, mustBeMember bool) (int64, time.Time, error) {
	if _, err := tx.Exec(ctx, lockConversation, convID); err != nil {
		return 0, time.Time{}, fmt.Errorf("lock conversation: %w", err)
	}
	var seq int64
	var at time.Time
	err := tx.QueryRow(ctx, `
		UPDATE conversations c SET last_seq = last_seq + 1, change_xid = pg_current_xact_id(), update_time = now()
		WHERE c.id = $1 AND (NOT $3 OR (`+canWrite+`))
		RETURNING last_seq, update_time`, convID, actor, mustBeMember).Scan(&seq, &at)
	if err == pgx.ErrNoRows {
		return 0, time.Time{}, whyRefused(ctx, tx, convID, actor)
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("bump seq: %w", err)
	}
	return seq, at, nil
}

// whyRefused tells a write that was refused why: the other member of a
// direct conversation blocked the writer, or the writer cannot see it.
func whyRefused(ctx context.Context, q querier, convID, writer uuid.UUID) error {
	var blocked bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM conversations c
		JOIN members me ON me.conversation_id = c.id AND me.user_id = $2 AND me.left_seq IS NULL
		JOIN members p ON p.conversation_id = c.id AND p.user_id <> $2
		JOIN blocks b ON b.blocker_id = p.user_id AND b.blocked_id = $2
		WHERE c.id = $1 AND c.type = 1)`, convID, writer).Scan(&blocked)
	switch {
	case err != nil:
		return fmt.Errorf("check block: %w", err)
	case blocked:
		return errBlocked
	}
	return errNoConversation
}

// appendEvent stores body as the conversation's next event, in tx.
func appendEvent(ctx context.Context, tx pgx.Tx, convID, actor uuid.UUID, device string, body *chatv1.Event, mustBeMember bool) (*chatv1.Event, error) {
	seq, at, err := nextSeq(ctx, tx, convID, actor, mustBeMember)
	if err != nil {
		return nil, err
	}
	encoded, err := proto.Marshal(&chatv1.Event{Kind: body.Kind})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, create_time, body, target_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		convID, seq, kindOf(body), actor, nullUUID(device), at, encoded, targetOf(body)); err != nil {
		return nil, fmt.Errorf("insert event: %w", err)
	}
	return &chatv1.Event{
		ConversationId: convID.String(),
		Seq:            uint64(seq),
		CreateTime:     timestamppb.New(at),
		ActorUserId:    actor.String(),
		Kind:           body.Kind,
	}, nil
}

// nullUUID maps "" (no device, e.g. an internal caller) to NULL.
func nullUUID(s string) *uuid.UUID {
	id, err := uuid.Parse(s)
	if err != nil {
		return nil
	}
	return &id
}

// eventRow is one events row as read back for sync and history.
type eventRow struct {
	convID      uuid.UUID
	seq         int64
	kind        int16
	actor       uuid.UUID
	device      *uuid.UUID
	created     time.Time
	body        []byte
	messageID   *uuid.UUID
	clientMsgID *string
	editTime    *time.Time
	recallTime  *time.Time
}

// eventColumns lists eventRow's columns in scan order.
const eventColumns = `e.conversation_id, e.seq, e.kind, e.actor_id, e.actor_device_id, e.create_time,
	e.body, e.message_id, e.client_msg_id, e.edit_time, e.recall_time`

func (r *eventRow) scan(row pgx.Row) error {
	return row.Scan(r.fields()...)
}

// fields returns scan targets for eventColumns followed by extra.
func (r *eventRow) fields(extra ...any) []any {
	return append([]any{&r.convID, &r.seq, &r.kind, &r.actor, &r.device, &r.created,
		&r.body, &r.messageID, &r.clientMsgID, &r.editTime, &r.recallTime}, extra...)
}

// event decodes the row into its API form.
func (r *eventRow) event() (*chatv1.Event, error) {
	ev := &chatv1.Event{
		ConversationId: r.convID.String(),
		Seq:            uint64(r.seq),
		CreateTime:     timestamppb.New(r.created),
		ActorUserId:    r.actor.String(),
	}
	if r.kind == kindMessage {
		m, err := r.message()
		if err != nil {
			return nil, err
		}
		ev.Kind = &chatv1.Event_Message{Message: m}
		return ev, nil
	}
	var body chatv1.Event
	if err := proto.Unmarshal(r.body, &body); err != nil {
		return nil, fmt.Errorf("decode event %s/%d: %w", r.convID, r.seq, err)
	}
	ev.Kind = body.Kind
	return ev, nil
}

// message decodes a kind-1 row into the message as it is now.
func (r *eventRow) message() (*chatv1.Message, error) {
	m := &chatv1.Message{
		ConversationId: r.convID.String(),
		Seq:            uint64(r.seq),
		SenderUserId:   r.actor.String(),
		CreateTime:     timestamppb.New(r.created),
	}
	if r.messageID != nil {
		m.MessageId = r.messageID.String()
	}
	if r.device != nil {
		m.SenderDeviceId = r.device.String()
	}
	if r.clientMsgID != nil {
		m.ClientMsgId = *r.clientMsgID
	}
	if r.editTime != nil {
		m.EditTime = timestamppb.New(*r.editTime)
	}
	if r.recallTime != nil {
		m.RecallTime = timestamppb.New(*r.recallTime)
		return m, nil
	}
	m.Content = new(chatv1.MessageContent)
	if err := proto.Unmarshal(r.body, m.Content); err != nil {
		return nil, fmt.Errorf("decode message %s/%d: %w", r.convID, r.seq, err)
	}
	return m, nil
}
