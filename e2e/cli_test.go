package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	cliOnce   sync.Once
	cliBinary string
	cliErr    error
)

// buildCLI builds waggle-cli next to the waggle binary TestMain built
// (TestMain removes that directory at the end).
func buildCLI(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		cliBinary = filepath.Join(filepath.Dir(binary), "waggle-cli")
		out, err := exec.Command("go", "build", "-o", cliBinary, "../cmd/waggle-cli").CombinedOutput()
		if err != nil {
			cliErr = errors.New(string(out))
		}
	})
	if cliErr != nil {
		t.Fatalf("build waggle-cli: %v", cliErr)
	}
	return cliBinary
}

// cliUser runs waggle-cli as one person: their own credentials file.
type cliUser struct {
	t      *testing.T
	bin    string
	config string // the credentials file
	env    []string
}

func newCLIUser(t *testing.T, server, name string) *cliUser {
	config := filepath.Join(t.TempDir(), name+".json")
	return &cliUser{t: t, bin: buildCLI(t), config: config, env: append(os.Environ(),
		"WAGGLE_SERVER="+server,
		"WAGGLE_CLI_CONFIG="+config,
		"WAGGLE_PASSWORD="+password,
	)}
}

func (u *cliUser) command(args ...string) *exec.Cmd {
	cmd := exec.Command(u.bin, args...)
	cmd.Env = u.env
	return cmd
}

// run runs one command with stdin and returns its output and exit code.
func (u *cliUser) run(stdin string, args ...string) (string, string, int) {
	u.t.Helper()
	cmd := u.command(args...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		u.t.Fatalf("waggle-cli %q: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// json runs a command with --json that must succeed and decodes its output.
func (u *cliUser) json(v any, args ...string) {
	u.t.Helper()
	out, errOut, code := u.run("", append(args, "--json")...)
	if code != 0 {
		u.t.Fatalf("waggle-cli %q exited %d: %s", args, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		u.t.Fatalf("waggle-cli %q printed %q: %v", args, out, err)
	}
}

type cliMessage struct {
	Seq          uint64 `json:"seq"`
	Text         string `json:"text"`
	SenderUserID string `json:"sender_user_id"`
}

type cliConversation struct {
	ConversationID string `json:"conversation_id"`
	Type           string `json:"type"`
	Title          string `json:"title"`
	UnreadCount    uint64 `json:"unread_count"`
	LastSeq        uint64 `json:"last_seq"`
}

// TestCLIScriptedSession drives waggle-cli as two people would from a
// shell: register, create a group, send, read history, unread counts,
// a live tail, an interactive chat fed from stdin, and the exit codes, on
// each deployment.
func TestCLIScriptedSession(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and many processes")
	}
	forEachDeployment(t, testCLIScriptedSession)
}

func testCLIScriptedSession(t *testing.T, c *cluster) {
	srv := c.start("serve", "serve")
	alice, bob := newCLIUser(t, srv.url(), "alice"), newCLIUser(t, srv.url(), "bob")

	type account struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
		DeviceID string `json:"device_id"`
	}
	var a, b, who account
	alice.json(&a, "register", "alice")
	bob.json(&b, "register", "bob")
	alice.json(&who, "whoami")
	if a.UserID == "" || a.DeviceID == "" || who != a {
		t.Fatalf("register printed %+v, whoami %+v", a, who)
	}

	var created struct{ Conversation cliConversation }
	alice.json(&created, "group", "create", "--title", "team", b.UserID)
	conv := created.Conversation.ConversationID
	if conv == "" || created.Conversation.Type != "group" || created.Conversation.Title != "team" {
		t.Fatalf("group create printed %+v", created)
	}

	// Bob tails every conversation before Alice writes.
	tail := bob.command("tail", "--json")
	stdout, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	tailErr := &syncBuffer{}
	tail.Stderr = tailErr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tail.Process.Kill(); _ = tail.Wait() })
	lines := make(chan string, 16)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	waitForCLI(t, 10*time.Second, func() bool { return strings.Contains(tailErr.String(), "tailing every conversation") },
		func() string { return "tail did not start: " + tailErr.String() })

	var sent struct{ Message cliMessage }
	alice.json(&sent, "send", conv, "hello", "bob")
	if sent.Message.Text != "hello bob" || sent.Message.Seq == 0 {
		t.Fatalf("send printed %+v", sent)
	}
	hello := strconv.FormatUint(sent.Message.Seq, 10)

	t.Run("tail prints the other user's message as it arrives", func(t *testing.T) {
		deadline := time.After(10 * time.Second)
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("tail ended: %s", tailErr.String())
				}
				var ev struct {
					ConversationID string     `json:"conversation_id"`
					Kind           string     `json:"kind"`
					Message        cliMessage `json:"message"`
				}
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("tail printed %q: %v", line, err)
				}
				if ev.Kind == "message" && ev.ConversationID == conv && ev.Message.Text == "hello bob" && ev.Message.SenderUserID == a.UserID {
					return
				}
			case <-deadline:
				t.Fatalf("tail printed no message in 10s: %s", tailErr.String())
			}
		}
	})

	t.Run("conversations shows the unread count and the badge", func(t *testing.T) {
		var list struct {
			Badge         uint64
			Conversations []cliConversation
		}
		bob.json(&list, "conversations")
		if len(list.Conversations) != 1 || list.Conversations[0].ConversationID != conv || list.Conversations[0].UnreadCount != 1 || list.Badge != 1 {
			t.Fatalf("bob's conversations: %+v, want team with 1 unread and badge 1", list)
		}
		var read struct {
			UnreadCount uint64 `json:"unread_count"`
			Badge       uint64
		}
		bob.json(&read, "read", conv, hello)
		if read.UnreadCount != 0 || read.Badge != 0 {
			t.Fatalf("after read: %+v, want nothing unread", read)
		}
	})

	t.Run("chat sends the lines typed and send --stream goes over the edge", func(t *testing.T) {
		_, errOut, code := bob.run("first line\n/help\nsecond line\n", "chat", conv)
		if code != 0 {
			t.Fatalf("chat exited %d: %s", code, errOut)
		}
		alice.json(&sent, "send", "--stream", conv, "over the stream")
		var hist struct {
			Messages []cliMessage
			More     bool
		}
		alice.json(&hist, "history", conv)
		var texts []string
		for _, m := range hist.Messages {
			texts = append(texts, m.Text)
		}
		want := []string{"hello bob", "first line", "second line", "over the stream"}
		if strings.Join(texts, "|") != strings.Join(want, "|") || hist.More {
			t.Fatalf("history = %q (more %v), want %q", texts, hist.More, want)
		}
		alice.json(&hist, "history", conv, "--limit", "2", "--before", strconv.FormatUint(sent.Message.Seq, 10))
		if len(hist.Messages) != 2 || hist.Messages[1].Text != "second line" || !hist.More {
			t.Fatalf("history --limit 2 --before %d = %+v, want first and second line, more", sent.Message.Seq, hist)
		}
	})

	t.Run("presence shows the tailing user online", func(t *testing.T) {
		var p struct {
			Presences []struct{ UserID, Status string } `json:"presences"`
		}
		alice.json(&p, "presence", b.UserID)
		if len(p.Presences) != 1 || p.Presences[0].Status != "online" {
			t.Fatalf("presence of bob = %+v, want online", p)
		}
	})

	t.Run("exit codes: 2 for usage, 1 with the code for server errors", func(t *testing.T) {
		if _, errOut, code := bob.run("", "history"); code != 2 || !strings.Contains(errOut, "usage:") {
			t.Errorf("history without arguments: exit %d, %q; want 2 and the usage", code, errOut)
		}
		_, errOut, code := bob.run("", "history", "00000000-0000-0000-0000-000000000000")
		if code != 1 || !strings.Contains(errOut, "not_found") {
			t.Errorf("history of an unknown conversation: exit %d, %q; want 1 and not_found", code, errOut)
		}
		// Receipts print their answer, or the server's code if it has none.
		out, errOut, code := alice.run("", "receipts", conv, hello)
		if code != 0 && !(code == 1 && strings.Contains(errOut, "unimplemented")) {
			t.Errorf("receipts: exit %d, %q %q", code, out, errOut)
		}
	})

	t.Run("an expired access token is refreshed", func(t *testing.T) {
		path := bob.config
		var stored map[string]any
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &stored); err != nil {
			t.Fatal(err)
		}
		oldRefresh := stored["refresh_token"]
		stored["access_token_expire_time"] = "2000-01-01T00:00:00Z"
		raw, _ = json.Marshal(stored)
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		bob.json(&who, "whoami")
		raw, _ = os.ReadFile(path)
		_ = json.Unmarshal(raw, &stored)
		if who.UserID != b.UserID || stored["refresh_token"] == oldRefresh {
			t.Fatalf("whoami %+v; refresh token rotated: %v", who, stored["refresh_token"] != oldRefresh)
		}
	})

	t.Run("Ctrl-C ends tail with exit 0", func(t *testing.T) {
		_ = tail.Process.Signal(syscall.SIGINT)
		err := tail.Wait()
		if err != nil {
			t.Fatalf("tail after SIGINT: %v: %s", err, tailErr.String())
		}
	})

	t.Run("logout forgets the login", func(t *testing.T) {
		if _, errOut, code := alice.run("", "logout"); code != 0 {
			t.Fatalf("logout: exit %d: %s", code, errOut)
		}
		if _, errOut, code := alice.run("", "whoami"); code != 1 || !strings.Contains(errOut, "not logged in") {
			t.Fatalf("whoami after logout: exit %d, %q", code, errOut)
		}
	})
}

func waitForCLI(t *testing.T, within time.Duration, ok func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
