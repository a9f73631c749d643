package datadir_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wagglechat/waggle/datadir"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		name    string
		sub     string                         // the data directory, under a fresh temporary one
		prepare func(t *testing.T, dir string) // before Open
		wantErr []string                       // in Open's error; none: Open succeeds
	}{
		{"fresh directory is created", "waggle-data", func(t *testing.T, dir string) {}, nil},
		{"nested path is created", "a/b/waggle-data", func(t *testing.T, dir string) {}, nil},
		{"existing empty directory", "waggle-data", func(t *testing.T, dir string) { mkdir(t, dir) }, nil},
		{"path is a file", "waggle-data", func(t *testing.T, dir string) { write(t, dir, "x") }, []string{"cannot be created", "not a directory"}},
		{"token key not base64", "waggle-data", func(t *testing.T, dir string) {
			mkdir(t, dir)
			write(t, filepath.Join(dir, "token-key"), "not base64!\n")
		}, []string{"token-key is corrupt", "not base64", "restore it from a backup"}},
		{"token key too short", "waggle-data", func(t *testing.T, dir string) {
			mkdir(t, dir)
			write(t, filepath.Join(dir, "token-key"), base64.StdEncoding.EncodeToString(make([]byte, 16))+"\n")
		}, []string{"token-key is corrupt", "16 bytes, want 32"}},
		{"token key empty", "waggle-data", func(t *testing.T, dir string) {
			mkdir(t, dir)
			write(t, filepath.Join(dir, "token-key"), "")
		}, []string{"token-key is corrupt"}},
		{"internal secret too short", "waggle-data", func(t *testing.T, dir string) {
			mkdir(t, dir)
			write(t, filepath.Join(dir, "internal-secret"), "short\n")
		}, []string{"internal-secret is corrupt", "5 characters, want at least 16"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tt.sub)
			tt.prepare(t, dir)
			before := snapshot(dir)
			d, err := datadir.Open(dir)
			if len(tt.wantErr) > 0 {
				if err == nil {
					d.Close()
					t.Fatal("Open succeeded")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Open() = %v, want it to contain %q", err, w)
					}
				}
				// A corrupt secret is never replaced: a new token key would
				// end every session.
				for name, content := range before {
					if got, _ := os.ReadFile(filepath.Join(dir, name)); name != "lock" && string(got) != content {
						t.Errorf("%s changed from %q to %q", name, content, got)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Open() = %v", err)
			}
			defer d.Close()
			if len(d.TokenSeed()) != 32 {
				t.Errorf("token seed is %d bytes, want 32", len(d.TokenSeed()))
			}
			if len(d.InternalSecret()) < 16 {
				t.Errorf("internal secret %q is shorter than 16", d.InternalSecret())
			}
			for name, want := range map[string]os.FileMode{".": 0o700, "token-key": 0o600, "internal-secret": 0o600, "lock": 0o600} {
				fi, err := os.Stat(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != want {
					t.Errorf("%s has mode %v, want %v", name, got, want)
				}
			}
			key, _ := os.ReadFile(filepath.Join(dir, "token-key"))
			if got := base64.StdEncoding.EncodeToString(d.TokenSeed()) + "\n"; string(key) != got {
				t.Errorf("token-key holds %q, want %q (the format of --token-key)", key, got)
			}
		})
	}
}

// Reopening keeps the secrets (tokens survive a restart), and a temporary
// file a crash left behind mid-write is cleared.
func TestReopenKeepsSecrets(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	seed, secret := d.TokenSeed(), d.InternalSecret()
	d.Close()
	write(t, filepath.Join(dir, ".tmp-token-key-123"), "half a ke")

	d = open(t, dir)
	defer d.Close()
	if !bytes.Equal(d.TokenSeed(), seed) || d.InternalSecret() != secret {
		t.Error("reopening made new secrets")
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-token-key-123")); !os.IsNotExist(err) {
		t.Errorf("the crash's temporary file is still there: %v", err)
	}
	other := open(t, t.TempDir())
	defer other.Close()
	if bytes.Equal(other.TokenSeed(), seed) || other.InternalSecret() == secret {
		t.Error("two directories share a secret")
	}
}

func TestLockedInThisProcess(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	_, err := datadir.Open(dir)
	if err == nil || !strings.Contains(err.Error(), "data directory "+dir+" is in use by another waggle process (pid ") {
		t.Fatalf("second Open() = %v, want in use", err)
	}
	d.Close()
	open(t, dir).Close() // Close released it
}

// childDirEnv, when set, makes TestLockChild the test binary's child: it
// opens that directory, says so and holds it until its stdin closes.
const childDirEnv = "DATADIR_CHILD_DIR"

func TestLockChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("only run as TestLockedByAnotherProcess's child")
	}
	d, err := datadir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	os.Stdout.WriteString("opened\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// Another process holding the directory is refused by pid, and its exit
// (as a crash would) frees the directory.
func TestLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockChild$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "opened\n" {
		t.Fatalf("child said %q, %v: %s", line, err, stderr.String())
	}
	_, err := datadir.Open(dir)
	if want := "is in use by another waggle process (pid " + strconv.Itoa(cmd.Process.Pid) + ")"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open() while the child holds it = %v, want %q", err, want)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	stdin.Close()
	open(t, dir).Close()
}

func TestNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permission bits do not stop root")
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	mkdir(t, dir)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	_, err := datadir.Open(dir)
	if err == nil || !strings.Contains(err.Error(), "data directory "+dir+" is not writable") {
		t.Errorf("Open() on a read-only directory = %v, want not writable", err)
	}
	if err := os.Chmod(parent, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(parent, 0o700) })
	if _, err := datadir.Open(filepath.Join(parent, "new")); err == nil || !strings.Contains(err.Error(), "cannot be created") || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("Open() under a read-only parent = %v, want cannot be created: permission denied", err)
	}
}

func open(t *testing.T, dir string) *datadir.Dir {
	t.Helper()
	d, err := datadir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshot is the content of each file in dir.
func snapshot(dir string) map[string]string {
	m := map[string]string{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		m[e.Name()] = string(b)
	}
	return m
}
