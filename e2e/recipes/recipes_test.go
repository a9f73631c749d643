// Package recipes runs the shell recipes of docs/grpcurl.md, exactly as
// written, against a live `waggle serve`, and checks what they print, so the
// documentation and the server cannot drift apart.
//
// A recipe is a fenced block whose info string is "sh recipe=<name>". The
// blocks run in document order as one bash script from the repository root
// (as a reader pasting them one after another into a terminal would), with
// ADDR set to the test server's address. Every recipe needs an entry in
// checks below, and every entry a recipe.
//
// The recipes use the pinned grpcurl (go tool -modfile=tools/go.mod, built on
// first use), buf from node_modules (npm ci at the root) and jq.
package recipes

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/internal/testdeps"
)

// check is what a recipe must print. status is the exit status of the
// block's last command.
type check struct {
	status  int
	want    []string         // substrings of the output
	match   []*regexp.Regexp // patterns the output must match
	wantNum map[string]int   // substrings that must appear exactly this often
}

var (
	uuidRE = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
	checks = map[string]check{
		"setup": {},
		"list": {want: []string{
			"waggle.account.v1.AccountService", "waggle.chat.v1.MessageService", "waggle.edge.v1.EdgeService",
			"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
		}, wantNum: map[string]int{"SessionRegistryService": 0, "DeliveryService": 0, "RelationService": 0}},
		"list-methods": {want: []string{"waggle.chat.v1.MessageService.SendMessage", "waggle.chat.v1.MessageService.ListMessages"}},
		"describe": {want: []string{
			"rpc Connect ( stream .waggle.edge.v1.ConnectRequest ) returns ( stream .waggle.edge.v1.ConnectResponse );",
			"rpc Subscribe ( .waggle.edge.v1.SubscribeRequest ) returns ( stream .waggle.edge.v1.SubscribeResponse );",
			"message ClientFrame {", ".waggle.edge.v1.Hello hello = 10;",
		}},
		"template":           {want: []string{`"conversationId": ""`, `"clientMsgId": ""`, `"content": {`}},
		"health":             {wantNum: map[string]int{`"status": "SERVING"`: 2}},
		"register":           {want: []string{`"username": "alice"`, `"username": "bob"`, `"accessToken": "`, `"refreshToken": "`}},
		"login":              {match: []*regexp.Regexp{regexp.MustCompile(`alice ` + uuidRE + `, bob ` + uuidRE)}},
		"unauthenticated":    {want: []string{"Code: Unauthenticated", "grpcurl exited with 80"}},
		"list-conversations": {},
		"create-group":       {match: []*regexp.Regexp{regexp.MustCompile(`conversation ` + uuidRE)}},
		"send":               {want: []string{`"body": "Hello from grpcurl"`, `"clientMsgId": "terminal-1"`, `"seq": "`}},
		"history":            {want: []string{`"body": "Hello from grpcurl"`}},
		"sync":               {want: []string{`"body": "Hello from grpcurl"`, `"nextCursor": "`}},
		"stream": {want: []string{`"welcome": {`, `"sessionId": "`, `"id": "1"`, `"sendMessage": {`,
			`"body": "Hello from the stream"`, `"id": "2"`, `"pong": {}`}},
		"stream-push": {want: []string{`"welcome": {`, `"pushId": "1"`, `"body": "Hi Alice, from Bob"`}},
		"buf-list":    {want: []string{"waggle.edge.v1.EdgeService", "grpc.health.v1.Health"}},
		"buf-health":  {want: []string{`"status": "SERVING"`}},
		"buf-send":    {want: []string{`"body": "Hello from buf curl"`, `"clientMsgId": "terminal-4"`}},
		"buf-stream":  {want: []string{`"welcome": {`, `"id": "1"`, `"sendMessage": {`, `"body": "Hello from a buf curl stream"`}},
	}
)

type recipe struct {
	name string
	line int // of the opening fence, for messages
	body string
}

var fenceRE = regexp.MustCompile("^```sh recipe=([a-z0-9-]+)\\s*$")

// parseRecipes returns the recipe blocks of a Markdown file, in order.
func parseRecipes(path string) ([]recipe, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var (
		out  []recipe
		cur  *recipe
		body strings.Builder
		sc   = bufio.NewScanner(bytes.NewReader(b))
		n    int
	)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil:
			if m := fenceRE.FindStringSubmatch(line); m != nil {
				cur = &recipe{name: m[1], line: n}
				body.Reset()
			}
		case strings.TrimSpace(line) == "```":
			cur.body = body.String()
			out = append(out, *cur)
			cur = nil
		default:
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: recipe %q is not closed", path, cur.line, cur.name)
	}
	return out, sc.Err()
}

func TestParseRecipes(t *testing.T) {
	recipes, err := parseRecipes(filepath.Join(repoRoot(t), "docs", "grpcurl.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recipes {
		if seen[r.name] {
			t.Errorf("docs/grpcurl.md:%d: recipe %q appears twice", r.line, r.name)
		}
		seen[r.name] = true
		if _, ok := checks[r.name]; !ok {
			t.Errorf("docs/grpcurl.md:%d: recipe %q has no entry in checks (e2e/recipes/recipes_test.go)", r.line, r.name)
		}
		if strings.TrimSpace(r.body) == "" {
			t.Errorf("docs/grpcurl.md:%d: recipe %q is empty", r.line, r.name)
		}
	}
	for name := range checks {
		if !seen[name] {
			t.Errorf("checks has %q, which docs/grpcurl.md does not have", name)
		}
	}
}

func TestRecipes(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds grpcurl and waggle and runs a server")
	}
	root := repoRoot(t)
	recipes, err := parseRecipes(filepath.Join(root, "docs", "grpcurl.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"bash", "jq", filepath.Join(root, "node_modules", ".bin", "buf")} {
		if _, err := exec.LookPath(tool); err != nil {
			testdeps.Missing(t, fmt.Sprintf("the recipes need %s (%v); buf comes from `npm ci` at the repository root", tool, err))
		}
	}

	// Build grpcurl now, so its first build (~35 s on a cold cache) is not
	// charged to a recipe.
	start := time.Now()
	warm := exec.Command("go", "tool", "-modfile=tools/go.mod", "grpcurl", "-version")
	warm.Dir = root
	if out, err := warm.CombinedOutput(); err != nil {
		t.Fatalf("build grpcurl: %v\n%s", err, out)
	}
	t.Logf("grpcurl ready in %v", time.Since(start).Round(time.Millisecond))

	srv := startServer(t, root)

	var script strings.Builder
	script.WriteString("set -o pipefail\n")
	for _, r := range recipes {
		fmt.Fprintf(&script, "echo '@@begin %s@@'\n%s\necho \"@@end %s $?@@\"\n", r.name, r.body, r.name)
	}
	path := filepath.Join(t.TempDir(), "recipes.sh")
	if err := os.WriteFile(path, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", path)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "ADDR="+srv.addr)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start = time.Now()
	runErr := cmd.Run()
	t.Logf("recipes ran in %v", time.Since(start).Round(time.Millisecond))

	outputs, statuses := splitOutput(out.String())
	for _, r := range recipes {
		t.Run(r.name, func(t *testing.T) {
			got, ok := outputs[r.name]
			if !ok {
				t.Fatalf("docs/grpcurl.md:%d: recipe %q did not run (script error: %v)", r.line, r.name, runErr)
			}
			c := checks[r.name]
			st, ended := statuses[r.name]
			switch {
			case !ended:
				t.Errorf("recipe did not finish (script error: %v)", runErr)
			case st != c.status:
				t.Errorf("exit status %d, want %d", st, c.status)
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, re := range c.match {
				if !re.MatchString(got) {
					t.Errorf("output does not match %v", re)
				}
			}
			for w, n := range c.wantNum {
				if k := strings.Count(got, w); k != n {
					t.Errorf("output has %q %d times, want %d", w, k, n)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("docs/grpcurl.md:%d: recipe %q:\n%s\noutput:\n%s", r.line, r.name, r.body, got)
			}
		})
	}
	if t.Failed() {
		t.Logf("server log:\n%s", srv.log.String())
	}
}

var markerRE = regexp.MustCompile(`(?m)^@@(begin|end) ([a-z0-9-]+)(?: (\d+))?@@$`)

// splitOutput cuts the script's output at the markers around each recipe.
func splitOutput(s string) (outputs map[string]string, statuses map[string]int) {
	outputs, statuses = map[string]string{}, map[string]int{}
	var name string
	from := 0
	for _, m := range markerRE.FindAllStringSubmatchIndex(s, -1) {
		kind, n := s[m[2]:m[3]], s[m[4]:m[5]]
		if name != "" {
			outputs[name] = s[from:m[0]]
		}
		if kind == "begin" {
			name, from = n, m[1]
			continue
		}
		st, _ := strconv.Atoi(s[m[6]:m[7]])
		statuses[n] = st
		name = ""
	}
	if name != "" {
		outputs[name] = s[from:]
	}
	return outputs, statuses
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

type server struct {
	addr string
	log  *syncBuffer
}

// startServer builds cmd/waggle and runs `waggle serve` on a free port with
// a fresh database and Redis prefix, until the test ends.
func startServer(t *testing.T, root string) *server {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "waggle")
	build := exec.Command("go", "build", "-o", bin, "./cmd/waggle")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build waggle: %v\n%s", err, out)
	}
	dbURL := pgtest.NewURL(t)
	_, prefix := redistest.New(t)
	seed := make([]byte, 32)
	rand.Read(seed)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	s := &server{addr: addr, log: &syncBuffer{}}
	cmd := exec.Command(bin, "serve", "--addr", addr)
	cmd.Env = append(os.Environ(),
		"WAGGLE_POSTGRES_URL="+dbURL,
		"WAGGLE_REDIS_URL="+redistest.URL(),
		"WAGGLE_REDIS_PREFIX="+prefix,
		"WAGGLE_TOKEN_KEY="+base64.StdEncoding.EncodeToString(seed),
		"WAGGLE_INTERNAL_SECRET=recipes-"+base64.RawURLEncoding.EncodeToString(seed[:12]),
	)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for !healthy(addr) {
		select {
		case <-done:
			t.Fatalf("waggle serve exited: %s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waggle serve not healthy after 30s: %s", s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// healthy asks grpc.health.v1.Health/Check over the Connect protocol.
func healthy(addr string) bool {
	c := &http.Client{Timeout: time.Second}
	res, err := c.Post("http://"+addr+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader("{}"))
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return res.StatusCode == http.StatusOK && strings.Contains(b.String(), "SERVING\"") && !strings.Contains(b.String(), "NOT_SERVING")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
