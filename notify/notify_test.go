package notify

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPreview(t *testing.T) {
	long := strings.Repeat("a", 150)
	emoji := strings.Repeat("🐝", 120)
	tests := []struct {
		name, text, customType, want string
	}{
		{"short text", "hello", "", "hello"},
		{"empty text", "", "", ""},
		{"exactly 100", long[:100], "", long[:100]},
		{"101 cut to 100", long[:101], "", long[:100]},
		{"150 cut to 100", long, "", long[:100]},
		{"multi-byte characters are counted, not bytes", emoji, "", strings.Repeat("🐝", 100)},
		{"mixed", "é" + long, "", "é" + long[:99]},
		{"invalid UTF-8 replaced", "a\xffb", "", "a\uFFFDb"},
		{"custom type", "ignored text", "location", "[location]"},
		{"custom type without text", "", "poll", "[poll]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Preview(tt.text, tt.customType)
			if got != tt.want {
				t.Errorf("Preview(%q, %q) = %q, want %q", tt.text, tt.customType, got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Preview(%q, %q) = %q is not valid UTF-8", tt.text, tt.customType, got)
			}
		})
	}
}

func TestNopAndFunc(t *testing.T) {
	var n Notifier = Nop{}
	n.Notify(testNotification(0)) // discards

	var got []Notification
	n = Func(func(x Notification) { got = append(got, x) })
	n.Notify(testNotification(1))
	n.Notify(testNotification(2))
	if len(got) != 2 || got[0].Seq != 42 || got[1].Seq != 43 {
		t.Errorf("Func received %+v", got)
	}
}
