package safetext_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wagglechat/waggle/internal/safetext"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		s         string
		multiline bool
		want      string // a part of the error; "" for none
	}{
		{"hello, wörld 👋", false, ""},
		{"", false, ""},
		{"two\nlines\tand a tab", true, ""},
		{"two\nlines", false, "control character U+000A (at byte 3)"},
		{"tab\there", false, "control character U+0009 (at byte 3)"},
		{"nul\x00", true, "control character U+0000 (at byte 3)"},
		{"\x1b[31mred", true, "control character U+001B (at byte 0)"},
		{"cr\rlf", true, "control character U+000D (at byte 2)"},
		{"del\x7f", true, "control character U+007F (at byte 3)"},
		{"csi\u009b31m", true, "control character U+009B (at byte 3)"},
		{"nel\u0085", true, "control character U+0085 (at byte 3)"},
		{"\u00a0nbsp is fine", false, ""},
		{"bad\xffutf8", true, "not valid UTF-8 at byte 3"},
		{"cut\xe2\x82", true, "not valid UTF-8 at byte 3"},
		{"real \ufffd replacement is fine", true, ""},
	}
	for _, tt := range tests {
		err := safetext.Check("text", tt.s, tt.multiline)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Check(%q) = %v, want nil", tt.s, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "text ")):
			t.Errorf("Check(%q) = %v, want text ... %q", tt.s, err, tt.want)
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ s, want string }{
		{"plain\ttext\n", "plain\ttext\n"},
		{"\x1b[31mred\x1b[0m", `\u001b[31mred\u001b[0m`},
		{"nul\x00", `nul\u0000`},
		{"csi\u009b2J", `csi\u009b2J`},
		{"bad\xff", `bad\xff`},
		{"👋", "👋"},
	}
	for _, tt := range tests {
		if got := safetext.Escape(tt.s); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.s, got, tt.want)
		}
	}
	var buf bytes.Buffer
	if _, err := (safetext.Writer{W: &buf}).Write([]byte("a\x1bb")); err != nil || buf.String() != `a\u001bb` {
		t.Errorf("Writer wrote %q, %v", buf.String(), err)
	}
}

// Whatever a client sends, Check refuses it or it is safe to print, and
// Escape leaves nothing a terminal would act on.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"hi", "a\nb", "\x1b[2J", "\u009b", "\xff", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if safetext.Check("text", s, true) == nil {
			if !utf8.ValidString(s) || safetext.Escape(s) != s {
				t.Fatalf("Check accepted %q, which needs escaping", s)
			}
		}
		e := safetext.Escape(s)
		if !utf8.ValidString(e) || safetext.Check("escaped", e, true) != nil {
			t.Fatalf("Escape(%q) = %q, still unsafe", s, e)
		}
	})
}
