package chat

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

func kindOf(ev *chatv1.Event) EventKind {
	switch ev.Kind.(type) {
	case *chatv1.Event_Message:
		return KindMessage
	case *chatv1.Event_MessageEdited:
		return KindMessageEdited
	case *chatv1.Event_MessageRecalled:
		return KindMessageRecalled
	case *chatv1.Event_ReactionAdded:
		return KindReactionAdded
	case *chatv1.Event_ReactionRemoved:
		return KindReactionRemoved
	case *chatv1.Event_ConversationCreated:
		return KindConversationCreated
	case *chatv1.Event_MembersAdded:
		return KindMembersAdded
	case *chatv1.Event_MemberRemoved:
		return KindMemberRemoved
	case *chatv1.Event_ConversationRenamed:
		return KindConversationRenamed
	case *chatv1.Event_MemberRoleChanged:
		return KindMemberRoleChanged
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

// appendEvent stores body as the conversation's next event, in tx. Unless
// mustWrite is false (the creation event), it fails when actor may not
// write. prev is, on an edit or recall, the content it replaced: members
// who left before it see that content (history.go), so the one write per
// change stays one row.
func appendEvent(ctx context.Context, tx Tx, convID, actor uuid.UUID, device string, body *chatv1.Event, mustWrite bool, prev *chatv1.MessageContent) (*chatv1.Event, error) {
	encoded, err := proto.Marshal(&chatv1.Event{Kind: body.Kind})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	var prevBody []byte
	if prev != nil {
		if prevBody, err = proto.Marshal(prev); err != nil {
			return nil, fmt.Errorf("encode previous content: %w", err)
		}
	}
	seq, at, err := tx.AppendEvent(ctx, convID, NewEvent{Actor: actor, Device: nullUUID(device), Kind: kindOf(body),
		Target: targetOf(body), Body: encoded, Prev: prevBody, MustWrite: mustWrite})
	if err != nil {
		return nil, err
	}
	return &chatv1.Event{
		ConversationId: convID.String(),
		Seq:            uint64(seq),
		CreateTime:     timestamppb.New(at),
		ActorUserId:    actor.String(),
		Kind:           body.Kind,
	}, nil
}

// nullUUID maps "" (no device, e.g. an internal caller) to nil.
func nullUUID(s string) *uuid.UUID {
	id, err := uuid.Parse(s)
	if err != nil {
		return nil
	}
	return &id
}

// decodeEvent decodes a stored event into its API form.
func decodeEvent(r EventRow) (*chatv1.Event, error) {
	ev := &chatv1.Event{
		ConversationId: r.Conv.String(),
		Seq:            uint64(r.Seq),
		CreateTime:     timestamppb.New(r.Created),
		ActorUserId:    r.Actor.String(),
	}
	if r.Kind == KindMessage {
		m, err := decodeMessage(r)
		if err != nil {
			return nil, err
		}
		ev.Kind = &chatv1.Event_Message{Message: m}
		return ev, nil
	}
	var body chatv1.Event
	if err := proto.Unmarshal(r.Body, &body); err != nil {
		return nil, fmt.Errorf("decode event %s/%d: %w", r.Conv, r.Seq, err)
	}
	ev.Kind = body.Kind
	return ev, nil
}

// decodeMessage decodes a message row into the message as it is now.
func decodeMessage(r EventRow) (*chatv1.Message, error) {
	m := &chatv1.Message{
		ConversationId: r.Conv.String(),
		Seq:            uint64(r.Seq),
		SenderUserId:   r.Actor.String(),
		CreateTime:     timestamppb.New(r.Created),
	}
	if r.MessageID != nil {
		m.MessageId = r.MessageID.String()
	}
	if r.Device != nil {
		m.SenderDeviceId = r.Device.String()
	}
	if r.ClientMsgID != nil {
		m.ClientMsgId = *r.ClientMsgID
	}
	if r.EditTime != nil {
		m.EditTime = timestamppb.New(*r.EditTime)
	}
	if r.RecallTime != nil {
		m.RecallTime = timestamppb.New(*r.RecallTime)
		return m, nil
	}
	m.Content = new(chatv1.MessageContent)
	if err := proto.Unmarshal(r.Body, m.Content); err != nil {
		return nil, fmt.Errorf("decode message %s/%d: %w", r.Conv, r.Seq, err)
	}
	return m, nil
}
