package storetest_test

import (
	"path"
	"slices"
	"testing"

	"github.com/wagglechat/waggle/internal/storetest"
)

// TestRun checks which subtests Run makes, and that each gets the backend
// its own entry made.
func TestRun(t *testing.T) {
	backends := map[string]func(testing.TB) string{
		"sqlite":   func(testing.TB) string { return "made by sqlite" },
		"postgres": func(testing.TB) string { return "made by postgres" },
	}
	for _, tt := range []struct {
		env  string
		want []string
	}{
		{"", []string{"postgres", "sqlite"}}, // every backend, in name order
		{"sqlite", []string{"sqlite"}},
	} {
		t.Run("env="+tt.env, func(t *testing.T) {
			t.Setenv(storetest.Env, tt.env)
			var ran []string
			storetest.Run(t, backends, func(t *testing.T, b string) {
				name := path.Base(t.Name())
				if b != "made by "+name {
					t.Errorf("subtest %s got %q", name, b)
				}
				ran = append(ran, name)
			})
			if !slices.Equal(ran, tt.want) {
				t.Fatalf("ran %v, want %v", ran, tt.want)
			}
		})
	}
}
