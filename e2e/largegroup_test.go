package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
)

// TestLargeGroupCostsWhatADirectMessageCosts sends one message to a
// 10,000-member group with 2,000 members online on two edge processes, and
// one in a 1:1 conversation: both cost the same database writes, the group
// message one bus publish (the direct one two: each user's channel), and
// every online member gets it.
func TestLargeGroupCostsWhatADirectMessageCosts(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 users, 2,000 sessions and four processes")
	}
	const members, online = 10_000, 2_000
	// A Redis of its own, so its PUBLISH count is this test's alone.
	srv := redistest.StartServer(t)
	c := newClusterOn(t, "redis://"+srv.Addr()+"/0")
	chatAddr := freeAddr(t)
	pres := c.start("presence", "presence", "--chat-url", "http://"+chatAddr)
	chat := c.startAt("chat", chatAddr, "chat", "--presence-url", pres.url())
	edgeArgs := []string{"--chat-url", chat.url(), "--presence-url", pres.url()}
	edges := []*proc{c.start("edge1", "edge", edgeArgs...), c.start("edge2", "edge", edgeArgs...)}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// The members go straight into the database: registering 10,000
	// users (argon2id) would take minutes. Their tokens are minted with the
	// processes' key.
	users := provision(t, pool, c, chat.url(), members)
	owner := users[0]
	var group string
	for start := 1; start < members; start += 1000 {
		var ids []string
		for _, u := range users[start:min(start+1000, members)] {
			ids = append(ids, u.id)
		}
		if group == "" {
			res, err := owner.convs.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: "everyone", MemberUserIds: ids})
			if err != nil {
				t.Fatal(err)
			}
			group = res.GetConversation().GetConversationId()
			continue
		}
		if _, err := owner.convs.AddMembers(ctx, &chatv1.AddMembersRequest{ConversationId: group, UserIds: ids}); err != nil {
			t.Fatal(err)
		}
	}
	if n := owner.lastSeq(t, group); n != members/1000 {
		t.Fatalf("group at seq %d after its creation and additions, want %d", n, members/1000)
	}
	direct := newDirect(t, owner, users[1])

	// 2,000 members online, alternating between the edges: the last ones
	// added, whose first sync brings just their own addition.
	devices := make([]*device, online)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []error
	sem := make(chan struct{}, 100)
	for i := range online {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			m := members - online + i
			d, err := startDevice(t, fmt.Sprint("member ", m), users[m], connectEdge(edges[i%2].url()))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err)
				return
			}
			devices[i] = d
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d sessions failed, first: %v", len(failed), online, failed[0])
	}

	written := pgtest.CountWrites(t, pool, "deliveries")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	publishes := func() int64 {
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(info) {
			if rest, ok := strings.CutPrefix(line, "cmdstat_publish:calls="); ok {
				n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
				return n
			}
		}
		return 0
	}
	cost := func(conv string) (rows, pubs int64, seq uint64) {
		written()
		before := publishes()
		res, err := owner.msgs.SendMessage(ctx, &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: uuid.NewString(), Content: textContent("counted")})
		if err != nil {
			t.Fatal(err)
		}
		// The answer comes once the event is on the bus.
		return written(), publishes() - before, res.GetMessage().GetSeq()
	}
	rows1, pubs1, _ := cost(direct)
	rowsN, pubsN, seq := cost(group)
	t.Logf("one send: 1:1 wrote %d rows and published %d bus messages; the %d-member group %d rows, %d messages", rows1, pubs1, members, rowsN, pubsN)
	if rows1 == 0 || rowsN != rows1 {
		t.Errorf("a send wrote %d rows in a 1:1 and %d in a %d-member group", rows1, rowsN, members)
	}
	if pubs1 != 2 || pubsN != 1 {
		t.Errorf("a send published %d bus messages in a 1:1 (want 2, one per user) and %d in the group (want 1)", pubs1, pubsN)
	}
	deadline := time.Now().Add(30 * time.Second)
	missing := online
	for missing > 0 && time.Now().Before(deadline) {
		missing = 0
		for _, d := range devices {
			if !slices.Contains(d.seqs(group), seq) {
				missing++
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if missing > 0 {
		t.Fatalf("%d of %d online members did not get the group message", missing, online)
	}
}

// provision inserts n users and a device each into the database and
// returns them with access tokens signed by the cluster's key.
func provision(t *testing.T, pool *pgxpool.Pool, c *cluster, chatURL string, n int) []*user {
	t.Helper()
	signer, err := auth.NewSigner(c.tokenSeed, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ids, devices, names, hashes := make([]uuid.UUID, n), make([]uuid.UUID, n), make([]string, n), make([][]byte, n)
	out := make([]*user, n)
	suffix := uuid.NewString()[:6]
	for i := range n {
		ids[i], devices[i] = uuid.New(), uuid.New()
		names[i] = fmt.Sprintf("m%d-%s", i, suffix)
		hashes[i] = make([]byte, 32)
		rand.Read(hashes[i])
		token, _, err := signer.Issue(auth.Identity{UserID: ids[i].String(), DeviceID: devices[i].String()}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out[i] = asUser(chatURL, names[i], ids[i].String(), devices[i].String(), token)
	}
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO users (id, username, password_hash) SELECT u, n, 'unused' FROM unnest($1::uuid[], $2::text[]) AS t(u, n)`, ids, names); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO devices (id, user_id, refresh_hash, refresh_expire_time)
		SELECT d, u, h, now() + interval '1 day' FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS t(d, u, h)`, devices, ids, hashes); err != nil {
		t.Fatal(err)
	}
	return out
}
