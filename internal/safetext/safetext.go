// Package safetext keeps control characters out of the free text users set
// (message text, names, titles, aliases) and out of terminals that print
// it: a NUL truncates text in C libraries, and ESC, CSI and their friends
// let one user recolour, clear or retitle another user's terminal.
package safetext

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Refused reports whether r may not appear in free text: C0 controls,
// DEL and C1 controls. Newline and tab are refused only when multiline is
// false.
func Refused(r rune, multiline bool) bool {
	if multiline && (r == '\n' || r == '\t') {
		return false
	}
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}

// Check returns an error naming field and the first offending character,
// by code point and byte position, or the first invalid UTF-8 byte.
// multiline allows newline and tab (message text); labels (names, titles,
// aliases) are single lines.
func Check(field, s string, multiline bool) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Errorf("%s is not valid UTF-8 at byte %d", field, i)
			}
		}
		if Refused(r, multiline) {
			return fmt.Errorf("%s must not contain control character U+%04X (at byte %d)", field, r, i)
		}
	}
	return nil
}

// Escape returns s printable: every character Check refuses in multiline
// text is written as \u00XX and every invalid UTF-8 byte as \xNN. The
// \u form keeps JSON that passes through it valid.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case Refused(r, true):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	return !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return Refused(r, true) }) >= 0
}

// Writer escapes what is written to it (see Escape), so a terminal never
// receives control sequences from text, however it was stored.
type Writer struct{ W io.Writer }

// Write escapes p as a whole; callers write whole strings (fmt, tabwriter
// and json.Encoder do), so a character is never split across two writes.
func (w Writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.W, Escape(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
