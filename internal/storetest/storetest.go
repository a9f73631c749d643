// Package storetest picks the storage backend that a service's tests run
// on, so that every backend runs the same tests.
package storetest

import (
	"cmp"
	"os"
	"testing"
)

// Env names the backend to test (WAGGLE_TEST_STORE=<name>); Default when
// unset.
const (
	Env     = "WAGGLE_TEST_STORE"
	Default = "postgres"
)

// New returns a fresh backend of the kind Env names, made by its entry in
// backends; a name with no entry fails the test.
func New[T any](t testing.TB, backends map[string]func(testing.TB) T) T {
	t.Helper()
	name := cmp.Or(os.Getenv(Env), Default)
	newBackend, ok := backends[name]
	if !ok {
		t.Fatalf("%s=%q: no such store", Env, name)
	}
	return newBackend(t)
}
