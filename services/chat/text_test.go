package chat_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// Text users set is refused with a control character in it (newline and
// tab allowed in message text only), naming the field and the character.
func TestFreeTextRefusesControlCharacters(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		_, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		msg := f.send(alice, conv, "two\nlines\tare fine")

		calls := map[string]func(ctx context.Context, s string) error{
			"text": func(ctx context.Context, s string) error {
				_, err := f.svc.SendMessage(ctx, textReq(conv, uuid.NewString(), s))
				return err
			},
			"edit": func(ctx context.Context, s string) error {
				_, err := f.svc.EditMessage(ctx, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: msg.GetMessageId(), Content: textContent(s)})
				return err
			},
			"title": func(ctx context.Context, s string) error {
				_, err := f.svc.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: s, MemberUserIds: []string{bobID}})
				return err
			},
			"rename": func(ctx context.Context, s string) error {
				_, err := f.svc.UpdateConversation(ctx, &chatv1.UpdateConversationRequest{ConversationId: conv, Title: s})
				return err
			},
			"custom content type": func(ctx context.Context, s string) error {
				_, err := f.svc.SendMessage(ctx, &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: uuid.NewString(),
					Content: &chatv1.MessageContent{Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{Type: s}}}})
				return err
			},
		}
		field := map[string]string{"text": "text", "edit": "text", "title": "title", "rename": "title", "custom content type": "custom content type"}
		tests := []struct {
			s, want string
		}{
			{"red \x1b[31malert", "control character U+001B (at byte 4)"},
			{"nul\x00", "control character U+0000 (at byte 3)"},
			{"del\x7f", "control character U+007F (at byte 3)"},
			{"csi\u009b2J", "control character U+009B (at byte 3)"},
			{"bad\xffutf8", "not valid UTF-8 at byte 3"},
			{"carriage\rreturn", "control character U+000D (at byte 8)"},
		}
		for name, call := range calls {
			for _, tt := range tests {
				err := call(alice, tt.s)
				if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), field[name]+" ") || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s %q: %v, want invalid_argument naming %s and %q", name, tt.s, err, field[name], tt.want)
				}
			}
		}
		// Titles are one line; message text may have several.
		if err := calls["rename"](alice, "a\nb"); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("title with a newline: %v, want invalid_argument", err)
		}
		if err := calls["edit"](alice, "still\ttwo\nlines"); err != nil {
			t.Errorf("edit with newline and tab: %v", err)
		}
	})
}
