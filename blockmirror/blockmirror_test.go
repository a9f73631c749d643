package blockmirror_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/blockmirror"
	"github.com/wagglechat/waggle/errcode"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/services/contact"
	"github.com/wagglechat/waggle/services/presence"
)

// mirror is what both implementations are.
type mirror interface {
	contact.BlockMirror
	presence.BlockLists
}

// implementations runs every behaviour test against both mirrors.
var implementations = []struct {
	name string
	new  func(t *testing.T) mirror
}{
	{"memory", func(*testing.T) mirror { return blockmirror.NewMemory() }},
	{"redis", func(t *testing.T) mirror {
		client, prefix := redistest.New(t)
		return blockmirror.NewRedis(client, prefix)
	}},
}

func users(n int) []uuid.UUID {
	u := make([]uuid.UUID, n)
	for i := range u {
		u[i] = uuid.New()
	}
	return u
}

// scan returns every block ScanBlocks hands over, each once, sorted, and
// fails if a page is larger than 1000.
func scan(t *testing.T, m mirror) []string {
	t.Helper()
	seen := map[string]bool{}
	if err := m.ScanBlocks(t.Context(), func(page []contact.Block) error {
		if len(page) == 0 || len(page) > 1000 {
			t.Errorf("a page of %d blocks", len(page))
		}
		for _, b := range page {
			seen[b.Blocker.String()+">"+b.Blocked.String()] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func pairs(blocks ...contact.Block) []string {
	out := []string{}
	for _, b := range blocks {
		out = append(out, b.Blocker.String()+">"+b.Blocked.String())
	}
	slices.Sort(out)
	return out
}

func equal[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// blockedBy is BlockedBy sorted.
func blockedBy(t *testing.T, m mirror, user uuid.UUID) []string {
	t.Helper()
	got, err := m.BlockedBy(t.Context(), user.String())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

func among(t *testing.T, m mirror, viewer uuid.UUID, users ...uuid.UUID) []bool {
	t.Helper()
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.String()
	}
	got, err := m.BlockersAmong(t.Context(), viewer.String(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(users) {
		t.Fatalf("BlockersAmong: %d answers for %d users", len(got), len(users))
	}
	return got
}

func sortedStrings(ids ...uuid.UUID) []string {
	out := []string{}
	for _, id := range ids {
		out = append(out, id.String())
	}
	slices.Sort(out)
	return out
}

func TestMirror(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, m mirror)
	}{
		{"starts empty", func(t *testing.T, m mirror) {
			u := users(2)
			equal(t, "scan", scan(t, m), []string{})
			equal(t, "blocked by", blockedBy(t, m, u[0]), []string{})
			equal(t, "among", among(t, m, u[0], u[1]), []bool{false})
		}},
		{"answers both directions, one-way", func(t *testing.T, m mirror) {
			u := users(4) // 0 blocks 1 and 2; 3 blocks 1
			blocks := []contact.Block{{Blocker: u[0], Blocked: u[1]}, {Blocker: u[0], Blocked: u[2]}, {Blocker: u[3], Blocked: u[1]}}
			if err := m.AddBlocks(t.Context(), blocks); err != nil {
				t.Fatal(err)
			}
			equal(t, "blocked by 0", blockedBy(t, m, u[0]), sortedStrings(u[1], u[2]))
			equal(t, "blocked by 1", blockedBy(t, m, u[1]), []string{})
			equal(t, "blockers of 1 among all", among(t, m, u[1], u...), []bool{true, false, false, true})
			equal(t, "blockers of 0 among all", among(t, m, u[0], u...), []bool{false, false, false, false})
			equal(t, "scan", scan(t, m), pairs(blocks...))
		}},
		{"adding and removing are idempotent", func(t *testing.T, m mirror) {
			u := users(3)
			b := contact.Block{Blocker: u[0], Blocked: u[1]}
			other := contact.Block{Blocker: u[2], Blocked: u[1]}
			for _, step := range []struct {
				name   string
				add    bool
				blocks []contact.Block
				want   []string
			}{
				{"add", true, []contact.Block{b}, pairs(b)},
				{"add again", true, []contact.Block{b, b}, pairs(b)},
				{"add another", true, []contact.Block{other}, pairs(b, other)},
				{"remove", false, []contact.Block{b}, pairs(other)},
				{"remove again", false, []contact.Block{b}, pairs(other)},
				{"remove what never was", false, []contact.Block{{Blocker: u[1], Blocked: u[0]}}, pairs(other)},
				{"remove the last", false, []contact.Block{other}, []string{}},
			} {
				var err error
				if step.add {
					err = m.AddBlocks(t.Context(), step.blocks)
				} else {
					err = m.RemoveBlocks(t.Context(), step.blocks)
				}
				if err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				equal(t, step.name+": scan", scan(t, m), step.want)
				wantAmong := []bool{slices.Contains(step.want, pairs(b)[0]), false, slices.Contains(step.want, pairs(other)[0])}
				equal(t, step.name+": blockers of 1", among(t, m, u[1], u...), wantAmong)
			}
			equal(t, "blocked by 0 at the end", blockedBy(t, m, u[0]), []string{})
		}},
		{"empty calls", func(t *testing.T, m mirror) {
			if err := m.AddBlocks(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			if err := m.RemoveBlocks(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			got, err := m.BlockersAmong(t.Context(), uuid.NewString(), nil)
			if err != nil || len(got) != 0 {
				t.Fatalf("BlockersAmong of no users = %v, %v", got, err)
			}
		}},
		{"scans many blocks in pages", func(t *testing.T, m mirror) {
			u := users(50) // all block each other: 2450 blocks
			var blocks []contact.Block
			for _, a := range u {
				for _, b := range u {
					if a != b {
						blocks = append(blocks, contact.Block{Blocker: a, Blocked: b})
					}
				}
			}
			if err := m.AddBlocks(t.Context(), blocks); err != nil {
				t.Fatal(err)
			}
			equal(t, "scan", scan(t, m), pairs(blocks...))
		}},
		{"a scan may remove what it hands over", func(t *testing.T, m mirror) {
			u := users(40)
			var blocks []contact.Block
			for _, a := range u {
				for _, b := range u[:30] {
					if a != b {
						blocks = append(blocks, contact.Block{Blocker: a, Blocked: b})
					}
				}
			}
			if err := m.AddBlocks(t.Context(), blocks); err != nil {
				t.Fatal(err)
			}
			if err := m.ScanBlocks(t.Context(), func(page []contact.Block) error {
				return m.RemoveBlocks(t.Context(), page)
			}); err != nil {
				t.Fatal(err)
			}
			equal(t, "scan after", scan(t, m), []string{})
		}},
		{"a scan stops at fn's error", func(t *testing.T, m mirror) {
			u := users(2)
			if err := m.AddBlocks(t.Context(), []contact.Block{{Blocker: u[0], Blocked: u[1]}}); err != nil {
				t.Fatal(err)
			}
			stop := fmt.Errorf("stop")
			if err := m.ScanBlocks(t.Context(), func([]contact.Block) error { return stop }); err != stop {
				t.Fatalf("ScanBlocks = %v, want fn's error", err)
			}
		}},
		{"concurrent writers and readers", func(t *testing.T, m mirror) {
			viewer := uuid.New()
			u := users(16)
			var wg sync.WaitGroup
			for _, blocker := range u {
				wg.Go(func() {
					b := []contact.Block{{Blocker: blocker, Blocked: viewer}}
					for range 20 {
						if err := m.AddBlocks(context.Background(), b); err != nil {
							t.Error(err)
						}
						if _, err := m.BlockersAmong(context.Background(), viewer.String(), []string{blocker.String()}); err != nil {
							t.Error(err)
						}
						if err := m.RemoveBlocks(context.Background(), b); err != nil {
							t.Error(err)
						}
					}
					// Each ends blocking, so the outcome is known.
					if err := m.AddBlocks(context.Background(), b); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for i, found := range among(t, m, viewer, u...) {
				if !found {
					t.Fatalf("user %d's block is missing", i)
				}
			}
			if n := len(scan(t, m)); n != len(u) {
				t.Fatalf("%d blocks, want %d", n, len(u))
			}
		}},
	}
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, impl.new(t)) })
			}
		})
	}
}

// The Redis layout is shared with deployments already running: keys as
// documented, one set per user and direction.
func TestRedisKeys(t *testing.T) {
	if got, want := blockmirror.BlockersKey("waggle:", "u1"), "waggle:blockers:{u1}"; got != want {
		t.Fatalf("BlockersKey = %q, want %q", got, want)
	}
	if got, want := blockmirror.BlockedKey("waggle:", "u1"), "waggle:blocked:{u1}"; got != want {
		t.Fatalf("BlockedKey = %q, want %q", got, want)
	}
	client, prefix := redistest.New(t)
	m := blockmirror.NewRedis(client, prefix)
	a, b := uuid.New(), uuid.New()
	if err := m.AddBlocks(t.Context(), []contact.Block{{Blocker: a, Blocked: b}}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string][]string{
		blockmirror.BlockersKey(prefix, b.String()): {a.String()},
		blockmirror.BlockedKey(prefix, a.String()):  {b.String()},
	} {
		got, err := client.SMembers(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		equal(t, key, got, want)
	}
}

// Redis may hold what no contact service wrote: ScanBlocks deletes keys
// and members that are not user ids, and leaves other keys alone.
func TestRedisScanDropsGarbage(t *testing.T) {
	client, prefix := redistest.New(t)
	m := blockmirror.NewRedis(client, prefix)
	a, b := uuid.New(), uuid.New()
	for key, members := range map[string][]any{
		blockmirror.BlockersKey(prefix, b.String()): {a.String(), "not-a-user"},
		blockmirror.BlockersKey(prefix, "garbage"):  {a.String()},
		blockmirror.BlockedKey(prefix, "garbage"):   {b.String()},
	} {
		if err := client.SAdd(t.Context(), key, members...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Set(t.Context(), prefix+"lastseen:{x}", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	equal(t, "scan", scan(t, m), pairs(contact.Block{Blocker: a, Blocked: b}))
	keys, err := client.Keys(t.Context(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	equal(t, "keys left", keys, []string{blockmirror.BlockersKey(prefix, b.String()), prefix + "lastseen:{x}"})
	members, err := client.SMembers(t.Context(), blockmirror.BlockersKey(prefix, b.String())).Result()
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "members left", members, []string{a.String()})
}

// A Redis that is down is an error, which errcode reports as unavailable.
func TestRedisDown(t *testing.T) {
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer broken.Close()
	m := blockmirror.NewRedis(broken, "x:")
	u := users(2)
	for name, err := range map[string]error{
		"add":    m.AddBlocks(t.Context(), []contact.Block{{Blocker: u[0], Blocked: u[1]}}),
		"remove": m.RemoveBlocks(t.Context(), []contact.Block{{Blocker: u[0], Blocked: u[1]}}),
		"scan":   m.ScanBlocks(t.Context(), func([]contact.Block) error { return nil }),
		"among": func() error {
			_, err := m.BlockersAmong(t.Context(), u[0].String(), []string{u[1].String()})
			return err
		}(),
		"blocked by": func() error { _, err := m.BlockedBy(t.Context(), u[0].String()); return err }(),
	} {
		if code := errcode.Of(t.Context(), err); code != connect.CodeUnavailable {
			t.Errorf("%s with Redis down: %v (%v), want unavailable", name, err, code)
		}
	}
}
