package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/wagglechat/waggle/internal/testdeps"
)

// Server is a Postgres cluster of its own (initdb, pg_ctl) on a free port,
// for tests that stop and restart Postgres without touching the machine's
// shared one. It trusts every local connection, as the shared one does.
type Server struct {
	t       testing.TB
	bin     string // directory of initdb and pg_ctl
	dir     string // owns data/, the socket and the log
	port    int
	runAs   []string // runuser prefix when running as root: Postgres refuses to run as root
	running bool
}

// StartServer initialises and starts a throwaway Postgres and removes it
// when the test ends. Without initdb, or as root without a postgres user,
// it skips the test (fails it with CI=true).
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := findBin()
	if bin == "" {
		testdeps.Missing(t, "initdb not in PATH nor in /usr/lib/postgresql/*/bin: install PostgreSQL's server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// Not t.TempDir: its parents are private to the test's user, and the
	// server may run as another one.
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: temp dir: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: dir, port: port}
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			testdeps.Missing(t, fmt.Sprintf("running as root and no postgres user to run a throwaway Postgres as (%v): create one", err))
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("pgtest: chown %s: %v", dir, err)
		}
		s.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	s.run("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	s.Start()
	return s
}

// findBin returns the directory of initdb: the PATH's, else the newest
// Debian-style installation.
func findBin() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// version is the major version in /usr/lib/postgresql/<major>/bin.
func version(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return v
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// run runs one of the server's programs, as the postgres user if needed,
// and fails the test with its output if it fails.
func (s *Server) run(prog string, args ...string) {
	s.t.Helper()
	argv := append(append(slices.Clone(s.runAs), filepath.Join(s.bin, prog)), args...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		s.t.Fatalf("pgtest: %s: %v\n%s\nserver log:\n%s", prog, err, out, log)
	}
}

// URL is the URL of database db on the server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Start (re)starts the server on its port and waits until it accepts
// connections.
func (s *Server) Start() {
	s.t.Helper()
	if s.running {
		return
	}
	s.run("pg_ctl", "start", "-w", "-D", s.data(), "-l", filepath.Join(s.dir, "log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.port, s.dir))
	s.running = true
}

// Stop stops the server at once (pg_ctl stop -m immediate), as a crash
// would: connections drop, and the next start recovers from the WAL.
func (s *Server) Stop() {
	s.t.Helper()
	if !s.running {
		return
	}
	s.run("pg_ctl", "stop", "-w", "-D", s.data(), "-m", "immediate")
	s.running = false
}
