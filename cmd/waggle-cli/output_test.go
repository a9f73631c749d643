package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

func TestDescribeEvents(t *testing.T) {
	names := func(id string) string { return map[string]string{"u1": "alice", "u2": "bob"}[id] }
	at := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	msg := func(c *chatv1.MessageContent, mod func(*chatv1.Message)) *chatv1.Event {
		m := &chatv1.Message{ConversationId: "c", Seq: 7, SenderUserId: "u1", Content: c, CreateTime: at}
		if mod != nil {
			mod(m)
		}
		return &chatv1.Event{ConversationId: "c", Seq: 7, ActorUserId: "u1", CreateTime: at, Kind: &chatv1.Event_Message{Message: m}}
	}
	tests := []struct {
		ev   *chatv1.Event
		kind string
		want string
	}{
		{msg(textContent("hi\nthere"), nil), "message", "alice: hi⏎ there"},
		{msg(textContent("hi"), func(m *chatv1.Message) { m.EditTime = at }), "message", "alice: hi (edited)"},
		{msg(nil, func(m *chatv1.Message) { m.RecallTime = at }), "message", "alice: (recalled)"},
		{msg(&chatv1.MessageContent{Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{Type: "image", Data: []byte("abc")}}}, nil),
			"message", "alice: [image, 3 bytes]"},
		{&chatv1.Event{Seq: 1, ActorUserId: "u1", Kind: &chatv1.Event_ConversationCreated{ConversationCreated: &chatv1.ConversationCreated{
			Title: "team", MemberUserIds: []string{"u1", "u2"}}}}, "conversation_created", "alice created the conversation with alice, bob"},
		{&chatv1.Event{Seq: 2, ActorUserId: "u1", Kind: &chatv1.Event_MemberRemoved{MemberRemoved: &chatv1.MemberRemoved{
			UserId: "u2", Reason: chatv1.RemovalReason_REMOVAL_REASON_LEFT}}}, "member_left", "alice left"},
		{&chatv1.Event{Seq: 3, ActorUserId: "u2", Kind: &chatv1.Event_ReactionAdded{ReactionAdded: &chatv1.ReactionAdded{
			MessageSeq: 2, Emoji: "👍"}}}, "reaction_added", "bob reacted 👍 to #2"},
		{&chatv1.Event{Seq: 4, ActorUserId: "u1", Kind: &chatv1.Event_MemberRoleChanged{MemberRoleChanged: &chatv1.MemberRoleChanged{
			UserId: "u2", Role: chatv1.MemberRole_MEMBER_ROLE_ADMIN}}}, "member_role_changed", "alice made bob admin"},
	}
	for _, tt := range tests {
		e := eventOut(tt.ev)
		if e.Kind != tt.kind {
			t.Errorf("kind = %q, want %q", e.Kind, tt.kind)
		}
		if got := describe(e, names); !strings.HasSuffix(got, tt.want) || !strings.HasPrefix(got, fmt.Sprintf("#%d ", tt.ev.GetSeq())) {
			t.Errorf("describe = %q, want #%d ... %q", got, tt.ev.GetSeq(), tt.want)
		}
	}
}

func TestReportExitCodes(t *testing.T) {
	tests := []struct {
		err      error
		asJSON   bool
		code     int
		contains string
	}{
		{usagef("bad"), false, exitUsage, "waggle-cli: bad"},
		{fmt.Errorf("history: %w", connect.NewError(connect.CodeNotFound, errors.New("conversation not found"))), false, exitFailed,
			"history: not_found: conversation not found"},
		{fmt.Errorf("x: %w", connect.NewError(connect.CodeUnimplemented, errors.New("nope"))), true, exitFailed,
			`{"error":{"code":"unimplemented","message":"nope"}}`},
		{errNotLoggedIn, false, exitFailed, "not logged in"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if code := report(&b, tt.asJSON, tt.err); code != tt.code || !strings.Contains(b.String(), tt.contains) {
			t.Errorf("report(%v) = %d, %q; want %d with %q", tt.err, code, b.String(), tt.code, tt.contains)
		}
	}
}

func TestMessageTextFromStdin(t *testing.T) {
	c := &cli{env: env{stdin: strings.NewReader("line one\nline two\n")}}
	if got, err := c.messageText([]string{"-"}); err != nil || got != "line one\nline two" {
		t.Fatalf("messageText(-) = %q, %v", got, err)
	}
	if got, _ := c.messageText([]string{"a", "b"}); got != "a b" {
		t.Fatalf("messageText(a b) = %q", got)
	}
	var ue usageError
	if _, err := c.messageText([]string{" "}); !errors.As(err, &ue) {
		t.Fatalf("empty message: %v, want a usage error", err)
	}
}
