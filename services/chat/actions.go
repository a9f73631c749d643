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
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// lockMessage locks and returns the message messageIDField of convID if
// uid, a current member, may see it; NotFound otherwise.
func lockMessage(ctx context.Context, tx Tx, convID uuid.UUID, messageIDField string, uid uuid.UUID) (EventRow, error) {
	msgID, err := parseID("message_id", messageIDField)
	if err != nil {
		return EventRow{}, err
	}
	r, err := tx.LockMessage(ctx, convID, msgID, uid)
	return r, notFound(err, "message %s not found", msgID)
}

var errRecalled = connect.NewError(connect.CodeFailedPrecondition, errors.New("the message was recalled"))

// mutate runs fn in a transaction on a conversation the caller is in and
// notifies the events it appended after the commit.
func (s *Service) mutate(ctx context.Context, op, convIDField string, fn func(tx Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error)) ([]*chatv1.Event, error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", convIDField)
	if err != nil {
		return nil, err
	}
	var evs []*chatv1.Event
	if err := s.store.InTx(ctx, func(tx Tx) error {
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
	evs, err := s.mutate(ctx, "add reaction", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		if msg.RecallTime != nil {
			return nil, errRecalled
		}
		added, err := tx.AddReaction(ctx, convID, msg.Seq, req.GetEmoji(), uid)
		if err != nil || !added {
			return nil, err // already reacted: nothing changes
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_ReactionAdded{ReactionAdded: &chatv1.ReactionAdded{
			MessageId: msg.MessageID.String(), MessageSeq: uint64(msg.Seq), Emoji: req.GetEmoji()}}}, true, nil)
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
	evs, err := s.mutate(ctx, "remove reaction", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		removed, err := tx.RemoveReaction(ctx, convID, msg.Seq, req.GetEmoji(), uid)
		if err != nil || !removed {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_ReactionRemoved{ReactionRemoved: &chatv1.ReactionRemoved{
			MessageId: msg.MessageID.String(), MessageSeq: uint64(msg.Seq), Emoji: req.GetEmoji()}}}, true, nil)
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
	msgID, err := parseID("message_id", req.GetMessageId())
	if err != nil {
		return nil, err
	}
	msg, err := s.store.Message(ctx, convID, msgID, uid)
	if err != nil {
		return nil, s.internal(ctx, "list reactions", notFound(err, "message %s not found", msgID))
	}
	users, err := s.store.ReactionUsers(ctx, convID, msg.Seq, req.GetEmoji(), after, size+1)
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
	evs, err := s.mutate(ctx, "edit message", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		if msg.Actor != uid {
			return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only the sender may edit a message"))
		}
		if msg.RecallTime != nil {
			return nil, errRecalled
		}
		old, err := decodeMessage(msg)
		if err != nil {
			return nil, err
		}
		if old.GetContent().GetText() == nil {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("only text messages can be edited"))
		}
		at, err := tx.EditMessage(ctx, convID, msg.Seq, content)
		if err != nil {
			return nil, err
		}
		msg.Body, msg.EditTime = content, &at
		if edited, err = decodeMessage(msg); err != nil {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_MessageEdited{MessageEdited: &chatv1.MessageEdited{
			MessageId: msg.MessageID.String(), MessageSeq: uint64(msg.Seq), Content: req.GetContent()}}}, true, old.GetContent())
		return []*chatv1.Event{ev}, err
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
	evs, err := s.mutate(ctx, "recall message", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string) ([]*chatv1.Event, error) {
		msg, err := lockMessage(ctx, tx, convID, req.GetMessageId(), uid)
		if err != nil {
			return nil, err
		}
		if msg.Actor != uid {
			return nil, connect.NewError(connect.CodePermissionDenied, errors.New("only the sender may recall a message"))
		}
		if msg.RecallTime != nil {
			return nil, nil // already recalled: nothing changes
		}
		before, err := decodeMessage(msg)
		if err != nil {
			return nil, err
		}
		if age := s.now().Sub(msg.Created); age > s.cfg.RecallWindow {
			return nil, connect.NewError(connect.CodeFailedPrecondition,
				fmt.Errorf("messages can be recalled within %v of sending; this one is %v old", s.cfg.RecallWindow, age.Round(time.Second)))
		}
		// Earlier edits carry the old text too: they keep their place in the
		// sequence, without it.
		stripped, err := proto.Marshal(&chatv1.Event{Kind: &chatv1.Event_MessageEdited{MessageEdited: &chatv1.MessageEdited{
			MessageId: msg.MessageID.String(), MessageSeq: uint64(msg.Seq)}}})
		if err != nil {
			return nil, err
		}
		if err := tx.RecallMessage(ctx, convID, msg.Seq, stripped); err != nil {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_MessageRecalled{MessageRecalled: &chatv1.MessageRecalled{
			MessageId: msg.MessageID.String(), MessageSeq: uint64(msg.Seq)}}}, true, before.GetContent())
		return []*chatv1.Event{ev}, err
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.RecallMessageResponse{Event: first(evs)}, nil
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
	err = s.store.InTx(ctx, func(tx Tx) error {
		newly, err := tx.HideMessages(ctx, uid, convID, ids)
		if err != nil {
			return notFound(err, "some message_ids are not messages of this conversation you can see")
		}
		if len(newly) == 0 {
			return nil
		}
		hidden := make([]string, len(newly))
		for i, id := range newly {
			hidden[i] = id.String()
		}
		ev, err = tx.AppendUserEvent(ctx, uid, &chatv1.UserEvent{Kind: &chatv1.UserEvent_MessagesDeleted{
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
	count, err := s.store.CanWrite(ctx, convID, uid)
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
