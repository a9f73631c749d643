package chat

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// querier is what both a pool and a transaction offer.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// lockMessage locks and returns the message messageID of convID if uid, a
// current member, may see it. Writers lock the message before the
// conversation (nextSeq), and nothing locks them the other way round, so
// they cannot deadlock.
func lockMessage(ctx context.Context, tx pgx.Tx, convID uuid.UUID, messageIDField string, uid uuid.UUID) (eventRow, error) {
	return findMessage(ctx, tx, convID, messageIDField, uid, " FOR UPDATE OF e")
}

func findMessage(ctx context.Context, q querier, convID uuid.UUID, messageIDField string, uid uuid.UUID, lock string) (eventRow, error) {
	var r eventRow
	msgID, err := parseID("message_id", messageIDField)
	if err != nil {
		return r, err
	}
	err = r.scan(q.QueryRow(ctx, `SELECT `+eventColumns+` FROM events e
		JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3 AND m.left_seq IS NULL
		WHERE e.conversation_id = $1 AND e.message_id = $2 AND e.seq > m.joined_seq`+lock, convID, msgID, uid))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, connect.NewError(connect.CodeNotFound, fmt.Errorf("message %s not found", msgID))
	}
	if err != nil {
		return r, fmt.Errorf("lock message: %w", err)
	}
	return r, nil
}

var errRecalled = connect.NewError(connect.CodeFailedPrecondition, errors.New("the message was recalled"))

// mutate runs fn in a transaction on a conversation the caller is in and
// notifies the events it appended after the commit.
func (s *Service) mutate(ctx context.Context, op, convIDField string, fn func(tx pgx.Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error)) ([]*chatv1.Event, error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", convIDField)
	if err != nil {
		return nil, err
	}
	var evs []*chatv1.Event
	if err := s.inTx(ctx, func(tx pgx.Tx) error {
		evs, err = fn(tx, convID, uid, id.DeviceID)
		return err
	}); err != nil {
		return nil, s.internal(ctx, op, err)
	}
	for _, ev := range evs {
		s.notify.Notify(ctx, Committed{Event: ev, SenderSessionID: sessionID(ctx)})
	}
	return evs, nil
}

func validEmoji(e string) error {
	if e == "" || len(e) > 32 || !utf8.ValidString(e) {
		return invalid("emoji must be 1 to 32 bytes of UTF-8")
	}
	for _, r := range e {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return invalid("emoji must not contain spaces or control characters")
		}
	}
	return nil
}

func (s *Service) AddReaction(ctx context.Context, req *chatv1.AddReactionRequest) (*chatv1.AddReactionResponse, error) {
	if err := validEmoji(req.GetEmoji()); err != nil {
		return nil, err
	}
	evs, err := s.mutate(ctx, "add reaction", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		if msg.recallTime != nil {
			return nil, errRecalled
		}
		tag, err := tx.Exec(ctx, `INSERT INTO reactions (conversation_id, message_seq, emoji, user_id) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, convID, msg.seq, req.GetEmoji(), uid)
		if err != nil || tag.RowsAffected() == 0 {
			return nil, err // already reacted: nothing changes
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_ReactionAdded{ReactionAdded: &chatv1.ReactionAdded{
			MessageId: msg.messageID.String(), MessageSeq: uint64(msg.seq), Emoji: req.GetEmoji()}}}, true)
		return []*chatv1.Event{ev}, err
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.AddReactionResponse{Event: first(evs)}, nil
}

func (s *Service) RemoveReaction(ctx context.Context, req *chatv1.RemoveReactionRequest) (*chatv1.RemoveReactionResponse, error) {
	if err := validEmoji(req.GetEmoji()); err != nil {
		return nil, err
	}
	evs, err := s.mutate(ctx, "remove reaction", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM reactions WHERE conversation_id = $1 AND message_seq = $2 AND emoji = $3 AND user_id = $4`,
			convID, msg.seq, req.GetEmoji(), uid)
		if err != nil || tag.RowsAffected() == 0 {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_ReactionRemoved{ReactionRemoved: &chatv1.ReactionRemoved{
			MessageId: msg.messageID.String(), MessageSeq: uint64(msg.seq), Emoji: req.GetEmoji()}}}, true)
		return []*chatv1.Event{ev}, err
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.RemoveReactionResponse{Event: first(evs)}, nil
}

func (s *Service) ListReactions(ctx context.Context, req *chatv1.ListReactionsRequest) (*chatv1.ListReactionsResponse, error) {
	if err := validEmoji(req.GetEmoji()); err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize(), 100, 1000)
	if err != nil {
		return nil, err
	}
	after, err := decodeUserToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	msg, err := findMessage(ctx, s.db, convID, req.GetMessageId(), uid, "")
	if err != nil {
		return nil, s.internal(ctx, "list reactions", err)
	}
	rows, err := s.db.Query(ctx, `SELECT user_id FROM reactions WHERE conversation_id = $1 AND message_seq = $2 AND emoji = $3
		AND user_id > $4 ORDER BY user_id LIMIT $5`, convID, msg.seq, req.GetEmoji(), after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list reactions", err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, s.internal(ctx, "list reactions", err)
	}
	res := &chatv1.ListReactionsResponse{}
	if len(users) > size {
		users = users[:size]
		res.NextPageToken = encodeUserToken(users[size-1])
	}
	for _, u := range users {
		res.UserIds = append(res.UserIds, u.String())
	}
	return res, nil
}

// EditMessage replaces the text of the caller's own text message. History
// shows the latest text with edit_time set; the edit is also an event in
// the sequence, so devices that already hold the message update it.
func (s *Service) EditMessage(ctx context.Context, req *chatv1.EditMessageRequest) (*chatv1.EditMessageResponse, error) {
	if req.GetContent().GetText() == nil {
		return nil, invalid("only text can be edited: content must be text")
	}
	content, err := s.encodeContent(req.GetContent())
	if err != nil {
		return nil, err
	}
	var edited *chatv1.Message
	evs, err := s.mutate(ctx, "edit message", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		if msg.actor != uid {
			return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only the sender may edit a message"))
		}
		if msg.recallTime != nil {
			return nil, errRecalled
		}
		old, err := msg.message()
		if err != nil {
			return nil, err
		}
		if old.GetContent().GetText() == nil {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("only text messages can be edited"))
		}
		var at time.Time
		if err := tx.QueryRow(ctx, `UPDATE events SET body = $3, edit_time = now() WHERE conversation_id = $1 AND seq = $2 RETURNING edit_time`,
			convID, msg.seq, content).Scan(&at); err != nil {
			return nil, err
		}
		msg.body, msg.editTime = content, &at
		if edited, err = msg.message(); err != nil {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_MessageEdited{MessageEdited: &chatv1.MessageEdited{
			MessageId: msg.messageID.String(), MessageSeq: uint64(msg.seq), Content: req.GetContent()}}}, true)
		if err != nil {
			return nil, err
		}
		return []*chatv1.Event{ev}, keepPrevious(ctx, tx, ev, old.GetContent())
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.EditMessageResponse{Message: edited, Event: first(evs)}, nil
}

// RecallMessage removes a message's content for everyone: the stored
// content and its reactions are deleted and a tombstone (recall_time set,
// no content) remains, announced by a MessageRecalled event.
func (s *Service) RecallMessage(ctx context.Context, req *chatv1.RecallMessageRequest) (*chatv1.RecallMessageResponse, error) {
	evs, err := s.mutate(ctx, "recall message", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		if msg.actor != uid {
			return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only the sender may recall a message"))
		}
		if msg.recallTime != nil {
			return nil, nil // already recalled: nothing changes
		}
		before, err := msg.message()
		if err != nil {
			return nil, err
		}
		if age := s.now().Sub(msg.created); age > s.cfg.RecallWindow {
			return nil, connect.NewError(connect.CodeFailedPrecondition,
				fmt.Errorf("messages can be recalled within %v of sending; this one is %v old", s.cfg.RecallWindow, age.Round(time.Second)))
		}
		if _, err := tx.Exec(ctx, `UPDATE events SET body = '', recall_time = now() WHERE conversation_id = $1 AND seq = $2`,
			convID, msg.seq); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM reactions WHERE conversation_id = $1 AND message_seq = $2`, convID, msg.seq); err != nil {
			return nil, err
		}
		// Earlier edits carry the old text too: they keep their place in the
		// sequence, without it.
		stripped, err := proto.Marshal(&chatv1.Event{Kind: &chatv1.Event_MessageEdited{MessageEdited: &chatv1.MessageEdited{
			MessageId: msg.messageID.String(), MessageSeq: uint64(msg.seq)}}})
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE events SET body = $3 WHERE conversation_id = $1 AND target_seq = $2 AND kind = $4`,
			convID, msg.seq, stripped, kindMessageEdited); err != nil {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_MessageRecalled{MessageRecalled: &chatv1.MessageRecalled{
			MessageId: msg.messageID.String(), MessageSeq: uint64(msg.seq)}}}, true)
		if err != nil {
			return nil, err
		}
		return []*chatv1.Event{ev}, keepPrevious(ctx, tx, ev, before.GetContent())
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.RecallMessageResponse{Event: first(evs)}, nil
}

// keepPrevious stores on an edit or recall event the content it replaced:
// members who left before it see that content (asOf), so the one write per
// change stays one row.
func keepPrevious(ctx context.Context, tx pgx.Tx, ev *chatv1.Event, prev *chatv1.MessageContent) error {
	body, err := proto.Marshal(prev)
	if err != nil {
		return fmt.Errorf("encode previous content: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE events SET prev_body = $3 WHERE conversation_id = $1 AND seq = $2`,
		ev.GetConversationId(), int64(ev.GetSeq()), body); err != nil {
		return fmt.Errorf("keep previous content: %w", err)
	}
	return nil
}

// DeleteMessagesForMe hides messages from the caller's own view. It is a
// user event, so every device of the caller hides them; other members are
// not affected.
func (s *Service) DeleteMessagesForMe(ctx context.Context, req *chatv1.DeleteMessagesForMeRequest) (*chatv1.DeleteMessagesForMeResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	if n := len(req.GetMessageIds()); n == 0 || n > 500 {
		return nil, invalid("message_ids must hold 1 to 500 ids")
	}
	ids := make([]uuid.UUID, len(req.GetMessageIds()))
	for i, raw := range req.GetMessageIds() {
		if ids[i], err = parseID("message_ids", raw); err != nil {
			return nil, err
		}
	}
	var ev *chatv1.UserEvent
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// Messages the caller can see in its history (up to its removal).
		rows, err := tx.Query(ctx, `SELECT e.seq, e.message_id FROM events e
			JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3
			WHERE e.conversation_id = $1 AND e.message_id = ANY($2) AND e.seq > m.joined_seq
				AND (m.left_seq IS NULL OR e.seq <= m.left_seq)`, convID, ids, uid)
		if err != nil {
			return err
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
			return err
		}
		if len(msgs) < len(dedupeIDs(ids)) {
			return connect.NewError(connect.CodeNotFound, errors.New("some message_ids are not messages of this conversation you can see"))
		}
		var hidden []string
		for _, m := range msgs {
			tag, err := tx.Exec(ctx, `INSERT INTO hidden_messages (user_id, conversation_id, message_seq) VALUES ($1, $2, $3)
				ON CONFLICT DO NOTHING`, uid, convID, m.seq)
			if err != nil {
				return err
			}
			if tag.RowsAffected() > 0 {
				hidden = append(hidden, m.id.String())
			}
		}
		if len(hidden) == 0 {
			return nil
		}
		ev, err = AppendUserEvent(ctx, tx, uid, &chatv1.UserEvent{Kind: &chatv1.UserEvent_MessagesDeleted{
			MessagesDeleted: &chatv1.MessagesDeleted{ConversationId: convID.String(), MessageIds: hidden}}})
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "delete messages", err)
	}
	if ev != nil {
		s.notify.NotifyUser(ctx, uid.String(), ev, sessionID(ctx))
	}
	return &chatv1.DeleteMessagesForMeResponse{UserEvent: ev}, nil
}

func dedupeIDs(ids []uuid.UUID) map[uuid.UUID]bool {
	m := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// SendTyping pushes a typing indicator to the other members' live sessions.
// It is never stored. "Typing" signals are limited to one per
// TypingInterval per user and conversation; "stopped" always passes.
func (s *Service) SendTyping(ctx context.Context, req *chatv1.SendTypingRequest) (*chatv1.SendTypingResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	var count int
	err = s.db.QueryRow(ctx, `SELECT c.member_count FROM conversations c WHERE c.id = $1 AND `+canWrite,
		convID, uid).Scan(&count)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, s.internal(ctx, "send typing", whyRefused(ctx, s.db, convID, uid))
	}
	if err != nil {
		return nil, s.internal(ctx, "send typing", err)
	}
	if req.GetTyping() && !s.typing.Allow(uid.String()+convID.String()) {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("at most one typing signal per %v", s.cfg.TypingInterval))
	}
	if count > s.cfg.TypingLimit {
		return &chatv1.SendTypingResponse{}, nil // not shown in large groups
	}
	s.notify.EphemeralToConversation(ctx, convID.String(), &edgev1.Push{Typing: []*chatv1.TypingEvent{{
		ConversationId: convID.String(), UserId: uid.String(), Typing: req.GetTyping()}}}, uid.String())
	return &chatv1.SendTypingResponse{}, nil
}
