// Package e2e runs Waggle as separate processes (presence, chat and two
// edges) against the machine's real Postgres and Redis, or as one embedded
// `waggle serve` on its own data directory, and drives them with real
// generated clients over HTTP/2.
package e2e

import (
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
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "waggle-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "waggle")
	build := exec.Command("go", "build", "-o", binary, "../cmd/waggle")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build waggle:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is one Waggle deployment: processes sharing a test database and
// Redis prefix, or (embedded) a `waggle serve` and its data directory.
type cluster struct {
	t           testing.TB
	dbURL       string
	redisPrefix string
	dataDir     string // embedded only
	tokenSeed   []byte // the processes' --token-key, to mint tokens for users made in the database
	env         []string
	mu          sync.Mutex
	procs       []*proc
}

func newCluster(t testing.TB) *cluster { return newClusterOn(t, redistest.URL()) }

// newClusterOn is newCluster on another Redis, such as a throwaway
// redis-server a test stops and restarts.
func newClusterOn(t testing.TB, redisURL string) *cluster {
	t.Helper()
	return newClusterWith(t, pgtest.NewURL(t), redisURL)
}

// newClusterWith is newCluster on another database and Redis, such as a
// throwaway Postgres a test stops and restarts (the chat role migrates it).
func newClusterWith(t testing.TB, dbURL, redisURL string) *cluster {
	t.Helper()
	_, prefix := redistest.New(t)
	seed := make([]byte, 32)
	rand.Read(seed)
	c := &cluster{t: t, dbURL: dbURL, redisPrefix: prefix, tokenSeed: seed}
	c.env = append(testEnv(),
		"WAGGLE_POSTGRES_URL="+c.dbURL,
		"WAGGLE_REDIS_URL="+redisURL,
		"WAGGLE_REDIS_PREFIX="+prefix,
		"WAGGLE_TOKEN_KEY="+base64.StdEncoding.EncodeToString(seed),
		"WAGGLE_INTERNAL_SECRET=e2e-internal-secret-"+base64.RawURLEncoding.EncodeToString(seed[:8]),
	)
	c.stopAtCleanup()
	return c
}

// newEmbedded is a deployment of one embedded `waggle serve` (start it
// with role "serve") on a data directory of its own: neither Postgres nor
// Redis is configured, and the token key and internal secret are the ones
// the server keeps in the directory.
func newEmbedded(t testing.TB) *cluster {
	t.Helper()
	c := &cluster{t: t, dataDir: t.TempDir()}
	c.env = append(testEnv(), "WAGGLE_DATA_DIR="+c.dataDir)
	c.stopAtCleanup()
	return c
}

// deployments are the two ways Waggle runs, for the tests of features every
// deployment must have.
var deployments = []struct {
	name string
	new  func(testing.TB) *cluster
}{
	{"postgres+redis", newCluster},
	{"embedded", newEmbedded},
}

// forEachDeployment runs test as a subtest on each deployment.
func forEachDeployment(t *testing.T, test func(t *testing.T, c *cluster)) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) { test(t, d.new(t)) })
	}
}

// testEnv is the environment of every test process: this one's without
// its WAGGLE_ settings (a developer's WAGGLE_POSTGRES_URL must not pick the
// stack), plus the settings tests need.
func testEnv() []string {
	return append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "WAGGLE_") }),
		"WAGGLE_LOG_LEVEL=warn",
		// The tests send faster than any person: lift the per-user limit.
		"WAGGLE_SEND_RATE=100000",
		// Every test user registers and logs in from 127.0.0.1: lift the
		// per-address limits (services/account tests them).
		"WAGGLE_LOGIN_LIMIT=-1", "WAGGLE_LOGIN_ADDRESS_LIMIT=-1", "WAGGLE_REGISTER_LIMIT=-1", "WAGGLE_REFRESH_LIMIT=-1",
	)
}

func (c *cluster) stopAtCleanup() {
	c.t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.procs {
			p.stop()
		}
	})
}

// proc is one running waggle process.
type proc struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

// start runs `waggle <role> args...` on a free port and waits until its
// health check answers SERVING.
func (c *cluster) start(name, role string, args ...string) *proc {
	c.t.Helper()
	return c.startAt(name, freeAddr(c.t), role, args...)
}

// startAt is start on a chosen address, for processes that must know each
// other's address before either starts.
func (c *cluster) startAt(name, addr, role string, args ...string) *proc {
	c.t.Helper()
	return c.startIn("", name, addr, append([]string{role, "--addr", addr}, args...)...)
}

// startIn runs `waggle args...` in directory dir ("": this process's) and
// waits until it answers at addr.
func (c *cluster) startIn(dir, name, addr string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: name, addr: addr, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir = dir
	p.cmd.Env = c.env
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()

	waitHealthy(c.t, p)
	return p
}

// waitHealthy waits until p's health check answers SERVING.
func waitHealthy(t testing.TB, p *proc) {
	t.Helper()
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited at start: %s", p.name, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy after 30s (%v): %s", p.name, err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process abruptly, as a crash would: no drain, no
// unregistering of sessions.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

func (p *proc) url() string { return "http://" + p.addr }

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// h2c is an HTTP client speaking HTTP/2 with prior knowledge, as Go and
// grpc-go clients do against a cleartext edge.
func h2c() *http.Client {
	t := &http.Transport{}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
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
