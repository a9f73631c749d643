// Package redistest gives each test its own key prefix on the machine's
// Redis and deletes the prefix's keys when the test ends.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/internal/testdeps"
)

// URL is the Redis tests use; override it with WAGGLE_TEST_REDIS_URL.
func URL() string {
	if u := os.Getenv("WAGGLE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// New returns a client and a fresh key prefix ("wt:<random>:"). Keys under
// the prefix are deleted at the end of the test. Without a reachable
// server it skips the test (fails it with CI=true).
func New(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(URL())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	testdeps.Require(t, "redis", opt.Network, opt.Addr, "start it (make deps) or set WAGGLE_TEST_REDIS_URL")
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redistest: ping %s: %v", URL(), err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "wt:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	return rdb, prefix
}
