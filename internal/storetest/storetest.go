// Package storetest runs a service's tests on every storage backend, so
// that every backend passes the same tests.
package storetest

import (
	"maps"
	"os"
	"slices"
	"testing"
)

// Env restricts the tests to one backend (WAGGLE_TEST_STORE=<name>); unset,
// they run on every backend.
const Env = "WAGGLE_TEST_STORE"

// Run runs test once per backend, each time as a subtest named after the
// backend and on a fresh one made by its entry in backends; with Env set,
// only on the backend it names, and a name with no entry fails t. A
// backend's entry skips the subtest when what it needs is missing
// (internal/testdeps), so the other backends still run.
func Run[T any](t *testing.T, backends map[string]func(testing.TB) T, test func(t *testing.T, b T)) {
	t.Helper()
	names := slices.Sorted(maps.Keys(backends))
	if only := os.Getenv(Env); only != "" {
		if _, ok := backends[only]; !ok {
			t.Fatalf("%s=%q: no such store (have %v)", Env, only, names)
		}
		names = []string{only}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) { test(t, backends[name](t)) })
	}
}
