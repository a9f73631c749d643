package redistest

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/internal/testdeps"
)

// Server is a redis-server child process on its own port, for tests that
// stop and restart Redis without touching the machine's shared one.
type Server struct {
	t    testing.TB
	path string
	port int
	dir  string
	cmd  *exec.Cmd
}

// StartServer starts a throwaway redis-server and stops it when the test
// ends. Without redis-server on the PATH it skips the test (fails it with
// CI=true).
func StartServer(t testing.TB) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		testdeps.Missing(t, "redis-server not in PATH: install Redis")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{t: t, path: path, port: port, dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start (re)starts the server on its port, empty, and waits until it
// answers.
func (s *Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.path, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", s.dir)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	probe := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer probe.Close()
	deadline := time.Now().Add(5 * time.Second)
	for err := probe.Ping(context.Background()).Err(); err != nil; err = probe.Ping(context.Background()).Err() {
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: redis-server on %s did not come up: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server, as a crash would.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
