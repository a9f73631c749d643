package chat_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// A removed member keeps the history it saw, as it was at its removal:
// edits, recalls and reactions made later do not reach it; a current
// member sees them.
func TestRemovedMemberSeesHistoryAsOfRemoval(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		carol, carolID := f.user("carol")
		conv := f.group(alice, bobID, carolID)

		edited := f.send(alice, conv, "v1")
		ok(t)(f.svc.EditMessage(alice, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: edited.GetMessageId(), Content: textContent("v2")}))
		ok(t)(f.svc.AddReaction(carol, &chatv1.AddReactionRequest{ConversationId: conv, MessageId: edited.GetMessageId(), Emoji: "👍"}))
		ok(t)(f.svc.AddReaction(bob, &chatv1.AddReactionRequest{ConversationId: conv, MessageId: edited.GetMessageId(), Emoji: "👍"}))
		recalled := f.send(alice, conv, "draft")
		ok(t)(f.svc.EditMessage(alice, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: recalled.GetMessageId(), Content: textContent("keep")}))
		f.send(alice, conv, "untouched")
		ok(t)(f.svc.RemoveMember(alice, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: bobID}))

		ok(t)(f.svc.EditMessage(alice, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: edited.GetMessageId(), Content: textContent("v3")}))
		ok(t)(f.svc.EditMessage(alice, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: edited.GetMessageId(), Content: textContent("v4")}))
		ok(t)(f.svc.RemoveReaction(carol, &chatv1.RemoveReactionRequest{ConversationId: conv, MessageId: edited.GetMessageId(), Emoji: "👍"}))
		ok(t)(f.svc.AddReaction(carol, &chatv1.AddReactionRequest{ConversationId: conv, MessageId: edited.GetMessageId(), Emoji: "❤️"}))
		ok(t)(f.svc.AddReaction(carol, &chatv1.AddReactionRequest{ConversationId: conv, MessageId: recalled.GetMessageId(), Emoji: "🎉"}))
		ok(t)(f.svc.RecallMessage(alice, &chatv1.RecallMessageRequest{ConversationId: conv, MessageId: recalled.GetMessageId()}))

		tests := []struct {
			who  string
			ctx  context.Context
			want []string
		}{
			{"removed bob", bob, []string{"v2 edited [👍×2 me]", "keep edited", "untouched"}},
			{"current carol", carol, []string{"v4 edited [👍×1, ❤️×1 me]", "(recalled)", "untouched"}},
		}
		for _, tt := range tests {
			res, err := f.svc.ListMessages(tt.ctx, &chatv1.ListMessagesRequest{ConversationId: conv, Direction: chatv1.Direction_DIRECTION_FORWARD})
			if err != nil {
				t.Fatalf("%s: %v", tt.who, err)
			}
			var got []string
			for _, m := range res.GetMessages() {
				got = append(got, shown(m))
			}
			if strings.Join(got, " | ") != strings.Join(tt.want, " | ") {
				t.Errorf("%s sees %q, want %q", tt.who, got, tt.want)
			}
		}

		// A fresh device of the removed member syncs the messages as they were.
		res, err := f.svc.Sync(bob, &chatv1.SyncRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var synced []string
		for _, ev := range res.GetEvents() {
			if m := ev.GetMessage(); m != nil && ev.GetConversationId() == conv {
				synced = append(synced, shown(m))
			}
			if e := ev.GetMessageEdited(); e != nil && ev.GetConversationId() == conv {
				synced = append(synced, "edit "+e.GetContent().GetText().GetBody())
			}
		}
		if want := "v2 edited | edit v2 | keep edited | edit keep | untouched"; strings.Join(synced, " | ") != want {
			t.Errorf("removed bob syncs %q, want %q", synced, want)
		}
	})
}

// shown is a message as a reader sees it: text, edited, reactions.
func shown(m *chatv1.Message) string {
	if m.GetRecallTime() != nil {
		return "(recalled)"
	}
	s := m.GetContent().GetText().GetBody()
	if m.GetEditTime() != nil {
		s += " edited"
	}
	if len(m.GetReactions()) > 0 {
		var rs []string
		for _, r := range m.GetReactions() {
			me := ""
			if r.GetReactedByMe() {
				me = " me"
			}
			rs = append(rs, fmt.Sprintf("%s×%d%s", r.GetEmoji(), r.GetCount(), me))
		}
		s += " [" + strings.Join(rs, ", ") + "]"
	}
	return s
}

// ok fails the test on a call's error.
func ok(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
