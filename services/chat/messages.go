package chat

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/errcode"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/safetext"
)

const maxClientMsgIDLen = 64

// SendMessage stores the message first and only then hands it to the fanout:
// once the sender has its answer, the message is durable.
func (s *Service) SendMessage(ctx context.Context, req *chatv1.SendMessageRequest) (*chatv1.SendMessageResponse, error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	if n := len(req.GetClientMsgId()); n == 0 || n > maxClientMsgIDLen {
		return nil, invalid("client_msg_id must be 1 to %d bytes", maxClientMsgIDLen)
	}
	content, err := s.encodeContent(req.GetContent())
	if err != nil {
		return nil, err
	}
	if ok, after := s.sends.Take(uid.String()); !ok {
		// A retry of a stored message gets its original even over the
		// limit, or the sender would be told a stored message failed.
		m, err := s.messageByClientID(ctx, convID, uid, req.GetClientMsgId())
		if err != nil {
			return nil, s.internal(ctx, "send message", err)
		}
		if m != nil {
			return s.duplicate(ctx, m), nil
		}
		return nil, errcode.RetryLater(fmt.Sprintf("at most %v messages a second", s.cfg.SendRate), after)
	}
	msgID, err := uuid.NewV7()
	if err != nil {
		return nil, s.internal(ctx, "send message", err)
	}
	// Stored with whatever else is being sent to the conversation now, in
	// one transaction (sendbatch.go).
	device := nullUUID(id.DeviceID)
	res, err := s.submit(ctx, convID, &sendReq{actor: uid, device: device, content: content,
		msgID: msgID, clientMsgID: req.GetClientMsgId(), done: make(chan sendResult, 1)})
	if err == nil {
		err = res.err
	}
	if err != nil {
		return nil, s.internal(ctx, "send message", err)
	}
	if !res.stored {
		// Stored before (the answer was lost), or refused: a retry of a
		// stored message gets the original even if the sender was since
		// removed or blocked.
		m, err := s.messageByClientID(ctx, convID, uid, req.GetClientMsgId())
		if err != nil {
			return nil, s.internal(ctx, "send message", err)
		}
		if m != nil {
			return s.duplicate(ctx, m), nil
		}
		// Refused: CanWrite says why (it may pass now: a block or removal
		// was undone since).
		if _, err := s.store.CanWrite(ctx, convID, uid); err != nil {
			return nil, s.internal(ctx, "send message", err)
		}
		return nil, errNoConversation
	}
	// The event as DecodeEvent would read the row back, with the
	// request's content rather than a decode of its encoding.
	m := &chatv1.Message{ConversationId: convID.String(), Seq: uint64(res.seq), SenderUserId: uid.String(),
		CreateTime: timestamppb.New(res.at), MessageId: msgID.String(), ClientMsgId: req.GetClientMsgId(), Content: req.GetContent()}
	if device != nil {
		m.SenderDeviceId = device.String()
	}
	ev := &chatv1.Event{ConversationId: m.ConversationId, Seq: m.Seq, CreateTime: timestamppb.New(res.at),
		ActorUserId: m.SenderUserId, Kind: &chatv1.Event_Message{Message: m}}
	s.notify.Notify(ctx, Committed{Event: ev, SenderSessionID: sessionID(ctx)})
	return &chatv1.SendMessageResponse{Message: ev.GetMessage()}, nil
}

// duplicate answers a repeated send with the stored original, and
// publishes it again: the first attempt's process may have died between
// its commit and its publish, which is why the sender never got an answer.
// Edges and clients drop what they already had, by position.
func (s *Service) duplicate(ctx context.Context, m *chatv1.Message) *chatv1.SendMessageResponse {
	s.notify.Notify(ctx, Committed{SenderSessionID: sessionID(ctx), Event: &chatv1.Event{
		ConversationId: m.GetConversationId(), Seq: m.GetSeq(), CreateTime: m.GetCreateTime(),
		ActorUserId: m.GetSenderUserId(), Kind: &chatv1.Event_Message{Message: m}}})
	return &chatv1.SendMessageResponse{Message: m, Duplicate: true}
}

// messageByClientID returns the message this sender already sent with
// clientMsgID, or nil.
func (s *Service) messageByClientID(ctx context.Context, convID, sender uuid.UUID, clientMsgID string) (*chatv1.Message, error) {
	r, err := s.store.MessageByClientID(ctx, convID, sender, clientMsgID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeMessage(r)
}

// encodeContent validates content and returns its stored form.
func (s *Service) encodeContent(c *chatv1.MessageContent) ([]byte, error) {
	switch body := c.GetBody().(type) {
	case *chatv1.MessageContent_Text:
		text := body.Text.GetBody()
		if strings.TrimSpace(text) == "" {
			return nil, invalid("text message is empty")
		}
		if err := safetext.Check("text", text, true); err != nil {
			return nil, invalid("%v", err)
		}
		if n := utf8.RuneCountInString(text); n > s.cfg.MaxTextChars {
			return nil, invalid("text has %d characters, the limit is %d", n, s.cfg.MaxTextChars)
		}
		for _, m := range body.Text.GetMentionUserIds() {
			if _, err := parseID("mention_user_ids", m); err != nil {
				return nil, err
			}
		}
	case *chatv1.MessageContent_Custom:
		if t := body.Custom.GetType(); t == "" || len(t) > 64 {
			return nil, invalid("custom content type must be 1 to 64 bytes")
		}
		if err := safetext.Check("custom content type", body.Custom.GetType(), false); err != nil {
			return nil, invalid("%v", err)
		}
	default:
		return nil, invalid("content must be text or custom")
	}
	encoded, err := proto.Marshal(c)
	if err != nil {
		return nil, invalid("content: %v", err)
	}
	if len(encoded) > s.cfg.MaxContentBytes {
		return nil, invalid("content is %d bytes, the limit is %d", len(encoded), s.cfg.MaxContentBytes)
	}
	return encoded, nil
}

// ListMessages pages through the messages the caller may see: from its join,
// up to its removal if it was removed, and then as they were at its removal
// (history.go).
func (s *Service) ListMessages(ctx context.Context, req *chatv1.ListMessagesRequest) (*chatv1.ListMessagesResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize(), 50, 200)
	if err != nil {
		return nil, err
	}
	forward := req.GetDirection() == chatv1.Direction_DIRECTION_FORWARD
	start, err := seqArg("start_seq", req.GetStartSeq())
	if err != nil {
		return nil, err
	}
	if req.GetPageToken() != "" {
		if start, err = decodeHistoryToken(req.GetPageToken(), convID, forward); err != nil {
			return nil, err
		}
	}

	joined, left, err := s.store.Span(ctx, convID, uid)
	if err != nil {
		return nil, s.internal(ctx, "list messages", err)
	}
	const upper = int64(1<<63 - 1)
	lo, hi := joined+1, upper
	if left != nil {
		hi = *left
	}
	if forward {
		if start > lo {
			lo = start
		}
	} else if start > 0 && start < hi {
		hi = start
	}
	found, err := s.store.Messages(ctx, convID, uid, lo, hi, forward, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list messages", err)
	}
	if left != nil {
		if err := s.rewind(ctx, convID, *left, found); err != nil {
			return nil, s.internal(ctx, "list messages", err)
		}
	}
	msgs := make([]*chatv1.Message, len(found))
	for i := range found {
		if msgs[i], err = decodeMessage(found[i]); err != nil {
			return nil, s.internal(ctx, "list messages", err)
		}
	}
	res := &chatv1.ListMessagesResponse{Messages: msgs}
	if len(msgs) > size {
		next := msgs[size].GetSeq()
		res.Messages = msgs[:size]
		res.NextPageToken = encodeHistoryToken(convID, forward, next)
	}
	if left != nil {
		err = s.reactionsAsOf(ctx, convID, uid, *left, res.Messages)
	} else {
		err = s.addReactions(ctx, convID, uid, res.Messages)
	}
	if err != nil {
		return nil, s.internal(ctx, "list messages", err)
	}
	return res, nil
}

// addReactions fills in the reaction summaries of msgs, in the order each
// emoji was first used.
func (s *Service) addReactions(ctx context.Context, convID, uid uuid.UUID, msgs []*chatv1.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	bySeq := make(map[uint64]*chatv1.Message, len(msgs))
	seqs := make([]int64, len(msgs))
	for i, m := range msgs {
		bySeq[m.GetSeq()] = m
		seqs[i] = int64(m.GetSeq())
	}
	counts, err := s.store.Reactions(ctx, convID, uid, seqs)
	if err != nil {
		return err
	}
	for _, r := range counts {
		m := bySeq[uint64(r.Seq)]
		m.Reactions = append(m.Reactions, &chatv1.ReactionSummary{Emoji: r.Emoji, Count: r.Count, ReactedByMe: r.Mine})
	}
	return nil
}

// History page tokens name the conversation and direction they belong to,
// so a token cannot be replayed against another conversation.
func encodeHistoryToken(conv uuid.UUID, forward bool, seq uint64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s/%t/%d", conv, forward, seq))
}

func decodeHistoryToken(tok string, conv uuid.UUID, forward bool) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, invalid("malformed page_token")
	}
	parts := strings.Split(string(raw), "/")
	if len(parts) != 3 || parts[0] != conv.String() || parts[1] != strconv.FormatBool(forward) {
		return 0, invalid("page_token belongs to another query")
	}
	seq, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || seq < 1 {
		return 0, invalid("malformed page_token")
	}
	return seq, nil
}

// User-ordered lists (members, receipts, reactions) page by the last user
// id of the page.
func encodeUserToken(last uuid.UUID) string { return base64.RawURLEncoding.EncodeToString(last[:]) }

func decodeUserToken(tok string) (uuid.UUID, error) {
	if tok == "" {
		return uuid.Nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return uuid.Nil, invalid("malformed page_token")
	}
	id, err := uuid.FromBytes(raw)
	if err != nil {
		return uuid.Nil, invalid("malformed page_token")
	}
	return id, nil
}

// pageSize applies a list call's default and maximum page size.
func pageSize(requested int32, def, max int) (int, error) {
	switch {
	case requested < 0:
		return 0, invalid("page_size must not be negative")
	case requested == 0:
		return def, nil
	case int(requested) > max:
		return max, nil
	}
	return int(requested), nil
}
