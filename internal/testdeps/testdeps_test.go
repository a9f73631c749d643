package testdeps_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wagglechat/waggle/internal/testdeps"
)

// childAddrEnv, when set, makes TestRequireChild the test binary's child:
// it calls Require on that address as a test needing a service would.
const childAddrEnv = "TESTDEPS_CHILD_ADDR"

func TestRequireChild(t *testing.T) {
	addr := os.Getenv(childAddrEnv)
	if addr == "" {
		t.Skip("only run as TestRequire's child")
	}
	testdeps.Require(t, "thing", "tcp", addr, "start it")
	t.Log("went on past Require")
}

// TestRequire runs Require in a child test binary against a listening and
// a closed port, with CI unset and CI=true, and reads what go test would
// show: the verdict, the one line, and the line in the skip log.
func TestRequire(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := closed.Addr().String()
	closed.Close()
	line := "thing not reachable at " + gone + " (connect: connection refused): start it"

	tests := []struct {
		name    string
		addr    string
		ci      string
		wantOK  bool
		want    []string // in the child's -v output
		wantLog string   // the skip log's content
	}{
		{"reachable", l.Addr().String(), "", true, []string{"--- PASS", "went on past Require"}, ""},
		{"reachable under CI", l.Addr().String(), "true", true, []string{"--- PASS", "went on past Require"}, ""},
		{"unreachable skips", gone, "", true, []string{"--- SKIP", line}, line + "\n"},
		{"unreachable fails under CI", gone, "true", false, []string{"--- FAIL", line + "; CI=true, so a missing dependency fails the run"}, ""},
		{"CI other than true skips", gone, "1", true, []string{"--- SKIP", line}, line + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skipLog := filepath.Join(t.TempDir(), "skips")
			cmd := exec.Command(os.Args[0], "-test.run=^TestRequireChild$", "-test.v")
			cmd.Env = append(os.Environ(), childAddrEnv+"="+tt.addr, "CI="+tt.ci, testdeps.SkipLogEnv+"="+skipLog)
			out, err := cmd.CombinedOutput()
			if ok := err == nil; ok != tt.wantOK {
				t.Fatalf("child exited with %v, want success %v:\n%s", err, tt.wantOK, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("child output lacks %q:\n%s", w, out)
				}
			}
			if !tt.wantOK || tt.want[0] == "--- SKIP" {
				if strings.Contains(string(out), "went on past Require") {
					t.Errorf("the test went on past an unreachable service:\n%s", out)
				}
			}
			got, _ := os.ReadFile(skipLog)
			if string(got) != tt.wantLog {
				t.Errorf("skip log = %q, want %q", got, tt.wantLog)
			}
		})
	}
}
