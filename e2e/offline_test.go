package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wagglechat/waggle/internal/reflecttest"
	"github.com/wagglechat/waggle/internal/testdeps"
)

// inNetnsEnv marks the copy of the test binary that runs inside the
// network namespace.
const inNetnsEnv = "WAGGLE_E2E_IN_NETNS"

// TestServeWithNoNetwork runs the README's first command, `waggle serve`
// with nothing configured, in a network namespace of its own that has only
// a loopback device: no Postgres or Redis can be reached, whatever runs on
// this machine. The server must start, on its default address and data
// directory, list every public service through reflection, and let two
// users chat. The test binary re-runs itself under `unshare -n` for that.
func TestServeWithNoNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	if os.Getenv(inNetnsEnv) == "" {
		if _, err := exec.LookPath("unshare"); err != nil {
			testdeps.Missing(t, "unshare not installed (util-linux): it makes the network namespace of TestServeWithNoNetwork")
		}
		if out, err := exec.Command("unshare", "-n", "true").CombinedOutput(); err != nil {
			testdeps.Missing(t, "unshare -n fails here ("+strings.TrimSpace(string(out))+"): TestServeWithNoNetwork needs to make a network namespace (root, or user namespaces enabled)")
		}
		cmd := exec.Command("unshare", "-n", "--", os.Args[0], "-test.run=^TestServeWithNoNetwork$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("under unshare -n:\n%s", out)
		if err != nil {
			t.Fatalf("the test under unshare -n: %v", err)
		}
		return
	}

	// Inside: the namespace's loopback starts down.
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v %s", err, out)
	}
	for _, dep := range []string{"127.0.0.1:5432", "127.0.0.1:6379"} {
		if conn, err := net.DialTimeout("tcp", dep, time.Second); err == nil {
			conn.Close()
			t.Fatalf("%s answers inside the namespace", dep)
		}
	}
	addr := "127.0.0.1:8080" // the default :8080; nothing else listens in this namespace
	c := newEmbedded(t)
	// As the README runs it: no flags, in a fresh directory, so the data
	// goes to ./waggle-data.
	c.env = append(testEnv(), "WAGGLE_LOG_LEVEL=info")
	dir := t.TempDir()
	p := c.startIn(dir, "serve", addr, "serve")
	t.Logf("server log:\n%s", p.stderr.String())
	if !strings.Contains(p.stderr.String(), "stack=embedded") || !strings.Contains(p.stderr.String(), "waggle-data") {
		t.Errorf("the start-up log does not name the embedded stack and ./waggle-data:\n%s", p.stderr.String())
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	services := reflecttest.Services(t, conn)
	t.Logf("reflection lists: %s", strings.Join(services, " "))
	for _, want := range []string{
		"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
		"waggle.account.v1.AccountService", "waggle.chat.v1.ConversationService", "waggle.chat.v1.MessageService",
		"waggle.contact.v1.ContactService", "waggle.edge.v1.EdgeService", "waggle.presence.v1.PresenceService",
	} {
		if !slices.Contains(services, want) {
			t.Errorf("reflection does not list %s", want)
		}
	}

	alice, bob := register(t, p.url(), "alice"), register(t, p.url(), "bob")
	a := newDevice(t, "alice", alice, connectEdge(p.url()))
	b := newDevice(t, "bob", bob, connectEdge(p.url()))
	conv := newDirect(t, alice, bob)
	a.send(t, conv, "hello from a namespace with no network")
	b.send(t, conv, "and back")
	converge(t, conv, alice.lastSeq(t, conv), a, b)
	if _, err := os.Stat(filepath.Join(dir, "waggle-data", "waggle.db")); err != nil {
		t.Errorf("no database in ./waggle-data: %v", err)
	}
}
