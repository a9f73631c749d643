// Package testdeps decides what a test does when something it needs is
// missing (the machine's Postgres or Redis does not answer, a program is
// not installed): it skips with one line naming what is missing, so a
// laptop without them still runs the rest, or, with CI=true, fails with
// the same line, so CI never passes by skipping.
package testdeps

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// timeout bounds the dial: a local server that is down refuses at once,
// but a remote address that drops packets would otherwise hang each test.
const timeout = time.Second

// dials holds each address's dial outcome for the life of the test binary
// (network+" "+addr → func() error): every test asks, and a service that
// drops packets would otherwise cost each of them the timeout.
var dials sync.Map

// SkipLogEnv names a file that each skip appends its line to, so that a
// run of many packages (make test) can say what was skipped: go test
// prints a passing package's skips only with -v.
const SkipLogEnv = "WAGGLE_TEST_SKIPS"

// Require returns if network/addr accepts a connection. Otherwise it
// skips t, or fails it when the environment has CI=true, with one line:
// "<name> not reachable at <addr> (<why>): <hint>".
func Require(t testing.TB, name, network, addr, hint string) {
	t.Helper()
	once, _ := dials.LoadOrStore(network+" "+addr, sync.OnceValue(func() error { return dial(network, addr) }))
	err := once.(func() error)()
	if err == nil {
		return
	}
	Missing(t, fmt.Sprintf("%s not reachable at %s (%v): %s", name, addr, err, hint))
}

// Missing skips t, or fails it when the environment has CI=true, with
// line, which says what the test needs and how to get it.
func Missing(t testing.TB, line string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(line + "; CI=true, so a missing dependency fails the run")
	}
	if path := os.Getenv(SkipLogEnv); path != "" {
		if err := appendLine(path, line); err != nil {
			t.Logf("testdeps: %v", err)
		}
	}
	t.Skip(line)
}

func dial(network, addr string) error {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		// The address is in the message already: keep the cause only.
		if oe, ok := errors.AsType[*net.OpError](err); ok {
			return oe.Err
		}
		return err
	}
	return c.Close()
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("skip log: %w", err)
	}
	// One write per line: O_APPEND keeps the lines of parallel test
	// binaries whole.
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("skip log: %w", err)
	}
	return f.Close()
}
