package main

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// The --json output: snake_case keys, numbers as numbers, times as
// RFC 3339 in UTC, optional fields left out when unset.

type accountJSON struct {
	UserID      string `json:"user_id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name,omitempty"`
	DeviceID    string `json:"device_id"`
	Server      string `json:"server"`
}

type userJSON struct {
	UserID      string     `json:"user_id"`
	Username    string     `json:"username"`
	DisplayName string     `json:"display_name,omitempty"`
	CreateTime  *time.Time `json:"create_time,omitempty"`
}

type presenceJSON struct {
	UserID      string     `json:"user_id"`
	Status      string     `json:"status"`
	DeviceCount uint32     `json:"device_count"`
	LastSeen    *time.Time `json:"last_seen_time,omitempty"`
}

type conversationJSON struct {
	ConversationID string       `json:"conversation_id"`
	Type           string       `json:"type"`
	Title          string       `json:"title,omitempty"`
	PeerUserID     string       `json:"peer_user_id,omitempty"`
	MemberCount    uint32       `json:"member_count"`
	LastSeq        uint64       `json:"last_seq"`
	ReadSeq        uint64       `json:"read_seq"`
	UnreadCount    uint64       `json:"unread_count"`
	Role           string       `json:"role,omitempty"`
	Muted          bool         `json:"muted,omitempty"`
	CreateTime     *time.Time   `json:"create_time,omitempty"`
	UpdateTime     *time.Time   `json:"update_time,omitempty"`
	LastMessage    *messageJSON `json:"last_message,omitempty"`
}

type memberJSON struct {
	UserID    string     `json:"user_id"`
	Role      string     `json:"role"`
	JoinedSeq uint64     `json:"joined_seq"`
	ReadSeq   uint64     `json:"read_seq"`
	JoinTime  *time.Time `json:"join_time,omitempty"`
}

type messageJSON struct {
	MessageID      string      `json:"message_id"`
	ConversationID string      `json:"conversation_id"`
	Seq            uint64      `json:"seq"`
	SenderUserID   string      `json:"sender_user_id"`
	SenderDeviceID string      `json:"sender_device_id,omitempty"`
	ClientMsgID    string      `json:"client_msg_id,omitempty"`
	Text           string      `json:"text,omitempty"`
	Custom         *customJSON `json:"custom,omitempty"`
	CreateTime     *time.Time  `json:"create_time,omitempty"`
	EditTime       *time.Time  `json:"edit_time,omitempty"`
	RecallTime     *time.Time  `json:"recall_time,omitempty"`
}

type customJSON struct {
	Type string `json:"type"`
	Data []byte `json:"data,omitempty"` // base64
}

type markerJSON struct {
	ConversationID string     `json:"conversation_id"`
	UserID         string     `json:"user_id"`
	ReadSeq        uint64     `json:"read_seq"`
	UpdateTime     *time.Time `json:"update_time,omitempty"`
}

// eventJSON is one conversation event: kind names it, and the field of
// that name (message, title, user_ids, ...) carries it.
type eventJSON struct {
	ConversationID string       `json:"conversation_id"`
	Seq            uint64       `json:"seq"`
	Kind           string       `json:"kind"`
	ActorUserID    string       `json:"actor_user_id,omitempty"`
	CreateTime     *time.Time   `json:"create_time,omitempty"`
	Message        *messageJSON `json:"message,omitempty"`
	MessageID      string       `json:"message_id,omitempty"`
	MessageSeq     uint64       `json:"message_seq,omitempty"`
	Text           string       `json:"text,omitempty"`
	Emoji          string       `json:"emoji,omitempty"`
	Title          string       `json:"title,omitempty"`
	UserIDs        []string     `json:"user_ids,omitempty"`
	Role           string       `json:"role,omitempty"`
}

func timeOf(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

func userOut(u *accountv1.User) userJSON {
	return userJSON{UserID: u.GetUserId(), Username: u.GetUsername(), DisplayName: u.GetDisplayName(), CreateTime: timeOf(u.GetCreateTime())}
}

func presenceOut(p *presencev1.UserPresence) presenceJSON {
	return presenceJSON{UserID: p.GetUserId(), Status: statusName(p.GetStatus()), DeviceCount: p.GetDeviceCount(), LastSeen: timeOf(p.GetLastSeenTime())}
}

func statusName(s presencev1.PresenceStatus) string {
	switch s {
	case presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE:
		return "online"
	case presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE:
		return "offline"
	}
	return "unknown"
}

func conversationOut(c *chatv1.Conversation) conversationJSON {
	out := conversationJSON{
		ConversationID: c.GetConversationId(),
		Type:           typeName(c.GetType()),
		Title:          c.GetTitle(),
		PeerUserID:     c.GetPeerUserId(),
		MemberCount:    c.GetMemberCount(),
		LastSeq:        c.GetLastSeq(),
		ReadSeq:        c.GetSelf().GetReadSeq(),
		UnreadCount:    c.GetUnreadCount(),
		Muted:          c.GetSelf().GetMuted(),
		CreateTime:     timeOf(c.GetCreateTime()),
		UpdateTime:     timeOf(c.GetUpdateTime()),
	}
	if c.GetSelf() != nil {
		out.Role = roleName(c.GetSelf().GetRole())
	}
	if m := c.GetLastMessage(); m != nil {
		lm := messageOut(m)
		out.LastMessage = &lm
	}
	return out
}

func typeName(t chatv1.ConversationType) string {
	switch t {
	case chatv1.ConversationType_CONVERSATION_TYPE_DIRECT:
		return "direct"
	case chatv1.ConversationType_CONVERSATION_TYPE_GROUP:
		return "group"
	}
	return "unknown"
}

func roleName(r chatv1.MemberRole) string {
	switch r {
	case chatv1.MemberRole_MEMBER_ROLE_MEMBER:
		return "member"
	case chatv1.MemberRole_MEMBER_ROLE_ADMIN:
		return "admin"
	case chatv1.MemberRole_MEMBER_ROLE_OWNER:
		return "owner"
	}
	return "unknown"
}

func memberOut(m *chatv1.Member) memberJSON {
	return memberJSON{UserID: m.GetUserId(), Role: roleName(m.GetRole()), JoinedSeq: m.GetJoinedSeq(), ReadSeq: m.GetReadSeq(), JoinTime: timeOf(m.GetJoinTime())}
}

func messageOut(m *chatv1.Message) messageJSON {
	out := messageJSON{
		MessageID:      m.GetMessageId(),
		ConversationID: m.GetConversationId(),
		Seq:            m.GetSeq(),
		SenderUserID:   m.GetSenderUserId(),
		SenderDeviceID: m.GetSenderDeviceId(),
		ClientMsgID:    m.GetClientMsgId(),
		Text:           m.GetContent().GetText().GetBody(),
		CreateTime:     timeOf(m.GetCreateTime()),
		EditTime:       timeOf(m.GetEditTime()),
		RecallTime:     timeOf(m.GetRecallTime()),
	}
	if c := m.GetContent().GetCustom(); c != nil {
		out.Custom = &customJSON{Type: c.GetType(), Data: c.GetData()}
	}
	return out
}

func markerOut(m *chatv1.ReadMarker) markerJSON {
	return markerJSON{ConversationID: m.GetConversationId(), UserID: m.GetUserId(), ReadSeq: m.GetReadSeq(), UpdateTime: timeOf(m.GetUpdateTime())}
}

func eventOut(ev *chatv1.Event) eventJSON {
	out := eventJSON{ConversationID: ev.GetConversationId(), Seq: ev.GetSeq(), ActorUserID: ev.GetActorUserId(), CreateTime: timeOf(ev.GetCreateTime())}
	switch k := ev.GetKind().(type) {
	case *chatv1.Event_Message:
		m := messageOut(k.Message)
		out.Kind, out.Message = "message", &m
	case *chatv1.Event_MessageEdited:
		out.Kind, out.MessageID, out.MessageSeq = "message_edited", k.MessageEdited.GetMessageId(), k.MessageEdited.GetMessageSeq()
		out.Text = k.MessageEdited.GetContent().GetText().GetBody()
	case *chatv1.Event_MessageRecalled:
		out.Kind, out.MessageID, out.MessageSeq = "message_recalled", k.MessageRecalled.GetMessageId(), k.MessageRecalled.GetMessageSeq()
	case *chatv1.Event_ReactionAdded:
		out.Kind, out.MessageID, out.MessageSeq = "reaction_added", k.ReactionAdded.GetMessageId(), k.ReactionAdded.GetMessageSeq()
		out.Emoji = k.ReactionAdded.GetEmoji()
	case *chatv1.Event_ReactionRemoved:
		out.Kind, out.MessageID, out.MessageSeq = "reaction_removed", k.ReactionRemoved.GetMessageId(), k.ReactionRemoved.GetMessageSeq()
		out.Emoji = k.ReactionRemoved.GetEmoji()
	case *chatv1.Event_ConversationCreated:
		out.Kind, out.Title, out.UserIDs = "conversation_created", k.ConversationCreated.GetTitle(), k.ConversationCreated.GetMemberUserIds()
	case *chatv1.Event_MembersAdded:
		out.Kind, out.UserIDs = "members_added", k.MembersAdded.GetUserIds()
	case *chatv1.Event_MemberRemoved:
		out.Kind, out.UserIDs = "member_removed", []string{k.MemberRemoved.GetUserId()}
		if k.MemberRemoved.GetReason() == chatv1.RemovalReason_REMOVAL_REASON_LEFT {
			out.Kind = "member_left"
		}
	case *chatv1.Event_ConversationRenamed:
		out.Kind, out.Title = "conversation_renamed", k.ConversationRenamed.GetTitle()
	case *chatv1.Event_MemberRoleChanged:
		out.Kind, out.UserIDs, out.Role = "member_role_changed", []string{k.MemberRoleChanged.GetUserId()}, roleName(k.MemberRoleChanged.GetRole())
	default:
		out.Kind = "unknown"
	}
	return out
}

// clock formats a time for people, in local time.
func clock(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// body is a message's content in one line of text.
func body(m messageJSON) string {
	switch {
	case m.RecallTime != nil:
		return "(recalled)"
	case m.Custom != nil:
		return fmt.Sprintf("[%s, %d bytes]", m.Custom.Type, len(m.Custom.Data))
	}
	text := strings.ReplaceAll(m.Text, "\n", "⏎ ")
	if m.EditTime != nil {
		text += " (edited)"
	}
	return text
}

// names turns user ids into what to show for them.
type names func(userID string) string

// describe is an event in one line of text: "#seq time who: what".
func describe(ev eventJSON, name names) string {
	who := name(ev.ActorUserID)
	var what string
	switch ev.Kind {
	case "message":
		what = who + ": " + body(*ev.Message)
	case "message_edited":
		what = fmt.Sprintf("%s edited #%d: %s", who, ev.MessageSeq, ev.Text)
	case "message_recalled":
		what = fmt.Sprintf("%s recalled #%d", who, ev.MessageSeq)
	case "reaction_added":
		what = fmt.Sprintf("%s reacted %s to #%d", who, ev.Emoji, ev.MessageSeq)
	case "reaction_removed":
		what = fmt.Sprintf("%s removed %s from #%d", who, ev.Emoji, ev.MessageSeq)
	case "conversation_created":
		what = fmt.Sprintf("%s created the conversation with %s", who, nameList(ev.UserIDs, name))
	case "members_added":
		what = fmt.Sprintf("%s added %s", who, nameList(ev.UserIDs, name))
	case "member_removed":
		what = fmt.Sprintf("%s removed %s", who, nameList(ev.UserIDs, name))
	case "member_left":
		what = who + " left"
	case "conversation_renamed":
		what = fmt.Sprintf("%s renamed the conversation to %q", who, ev.Title)
	case "member_role_changed":
		what = fmt.Sprintf("%s made %s %s", who, nameList(ev.UserIDs, name), ev.Role)
	default:
		what = who + " changed something this client does not know"
	}
	return fmt.Sprintf("#%d %s %s", ev.Seq, clock(ev.CreateTime), what)
}

func nameList(ids []string, name names) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = name(id)
	}
	return strings.Join(out, ", ")
}

// shortID is the first block of a UUID, enough to tell ids apart on screen.
func shortID(id string) string {
	if i := strings.IndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}
