package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wagglechat/waggle/sqlite"
)

// crashDirEnv makes the test binary the writer that TestDurableAfterSIGKILL
// kills.
const crashDirEnv = "WAGGLE_SQLITE_CRASH_DIR"

// Every commit a process reported (as a server acks a send) is there after
// the process is killed with SIGKILL mid-stream and the database reopened.
// A SIGKILL leaves the OS's page cache intact, so this proves acks follow
// commits and that reopening recovers the WAL the killed process left; the
// fsync that synchronous=FULL adds for power loss cannot be shown by a test.
func TestDurableAfterSIGKILL(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		commitUntilKilled(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableAfterSIGKILL$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const killAfter = 200
	var acked []int
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		n, ok := strings.CutPrefix(lines.Text(), "committed ")
		if !ok {
			continue // the test framework's own output
		}
		i, err := strconv.Atoi(n)
		if err != nil {
			t.Fatalf("child wrote %q", lines.Text())
		}
		acked = append(acked, i)
		if len(acked) == killAfter {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
		}
	}
	// What the child wrote before it died is still read above: it counts.
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child ended with %v, want killed", err)
	}
	if len(acked) < killAfter {
		t.Fatalf("child reported %d commits before it ended, want at least %d", len(acked), killAfter)
	}

	// The killed process never checkpointed: its commits are in the WAL,
	// which reopening must recover.
	if fi, err := os.Stat(filepath.Join(dir, sqlite.FileName+"-wal")); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL left by the killed process: %v", err)
	}
	db := open(t, dir)
	for _, i := range acked {
		if n := query[int](t, db, `SELECT count(*) FROM user_streams WHERE user_id = ? AND last_seq = ?`, fmt.Sprint("u", i), i); n != 1 {
			t.Fatalf("commit %d of %d reported ones is missing", i, len(acked))
		}
	}
	t.Logf("%d reported commits all found; %d rows in all", len(acked), query[int](t, db, `SELECT count(*) FROM user_streams`))
}

// commitUntilKilled commits one row per transaction and reports each on
// stdout once Write has returned, until it is killed.
func commitUntilKilled(dir string) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Bounded so a parent that died cannot leave it running for ever.
	for i := 1; i <= 100_000; i++ {
		err := db.Write(ctx, func(tx *sqlite.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO user_streams (user_id, last_seq) VALUES (?, ?)`, fmt.Sprint("u", i), i)
			return err
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", i) // os.Stdout is unbuffered
	}
	os.Exit(3)
}
