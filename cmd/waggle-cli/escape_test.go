package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Text the server holds may carry terminal escapes (stored before they
// were refused, or crafted): the CLI prints them escaped, and its JSON
// still decodes to the exact text.
func TestUntrustedTextIsPrintedEscaped(t *testing.T) {
	const name = "Mallory\x1b[2J\x1b]0;pwned\x07\u009b31m"
	f := &fakeAccounts{access: "access-0", refresh: "refresh-0", display: name}
	server := serveAccounts(t, f)
	path := storedLogin(t, f, server, time.Now().Add(time.Hour))

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--config", path, "whoami"},
		env{getenv: envOf(nil), stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}); code != exitOK {
		t.Fatalf("whoami = %d: %s", code, errOut.String())
	}
	if strings.ContainsAny(out.String(), "\x1b\x07\u009b") || !strings.Contains(out.String(), `Mallory\u001b[2J\u001b]0;pwned\u0007\u009b31m`) {
		t.Fatalf("whoami printed %q, want the escapes escaped", out.String())
	}

	code, js, errs := whoami(t, path)
	var got accountJSON
	if code != exitOK || json.Unmarshal([]byte(js), &got) != nil || strings.ContainsAny(js, "\x1b\x07\u009b") || got.DisplayName != name {
		t.Fatalf("whoami --json = %d, %q (%s): want the exact name, escaped", code, js, errs)
	}
}
