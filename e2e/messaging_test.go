package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/bus"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
)

// TestMessagingAcrossProcesses is the core messaging proof: presence, two
// chat processes and two edges run as separate processes talking Connect
// over HTTP/2, with real Redis and Postgres, and users on different edges
// through the Connect protocol and grpc-go.
func TestMessagingAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	c := newCluster(t)
	suffix := uuid.NewString()[:8]
	// Chat and presence call each other: presence learns chat's address
	// before chat starts.
	chatAddr := freeAddr(t)
	pres := c.start("presence", "presence", "--chat-url", "http://"+chatAddr)
	chat := c.startAt("chat", chatAddr, "chat", "--presence-url", pres.url())
	// A second chat process: each edge sends through its own, so the
	// events of one conversation are committed and published by both.
	chat2 := c.start("chat2", "chat", "--presence-url", pres.url(), "--no-migrate")
	edgeArgs := func(id, chatURL string) []string {
		return []string{"--chat-url", chatURL, "--presence-url", pres.url(), "--edge-id", id}
	}
	edge1ID, edge2ID := "e1-"+suffix, "e2-"+suffix
	edge1 := c.start("edge1", "edge", edgeArgs(edge1ID, chat.url())...)
	// Edge 2 also carries the stream on grpc-go's own transport.
	edge2GRPC := freeAddr(t)
	edge2 := c.start("edge2", "edge", append(edgeArgs(edge2ID, chat2.url()), "--edge-grpc-addr", edge2GRPC)...)

	alice := register(t, chat.url(), "alice")
	alice2 := login(t, chat.url(), "alice")
	bob := register(t, chat.url(), "bob")
	carol := register(t, chat.url(), "carol")
	dave := register(t, chat.url(), "dave")

	// Edge 2 serves grpc-go clients (on both of its listeners) and a
	// Connect-protocol client at once.
	a1 := newDevice(t, "alice/1 connect@edge1", alice, connectEdge(edge1.url()))
	a2 := newDevice(t, "alice/2 grpc-go@edge2", alice2, grpcEdge(t, edge2.addr), connectEdge(edge1.url()))
	b := newDevice(t, "bob grpc-go@edge2-grpc", bob, grpcEdge(t, edge2GRPC), connectEdge(edge1.url()))
	cr := newDevice(t, "carol connect@edge2", carol, connectEdge(edge2.url()), connectEdge(edge1.url()))
	everyone := []*device{a1, a2, b, cr}

	ctx := context.Background()
	dres, err := alice.convs.CreateDirectConversation(ctx, &chatv1.CreateDirectConversationRequest{PeerUserId: bob.id})
	if err != nil {
		t.Fatal(err)
	}
	direct := dres.GetConversation().GetConversationId()
	gres, err := alice.convs.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: "team", MemberUserIds: []string{bob.id, carol.id}})
	if err != nil {
		t.Fatal(err)
	}
	group := gres.GetConversation().GetConversationId()

	t.Run("every device of every member gets every message in order exactly once", func(t *testing.T) {
		var wg sync.WaitGroup
		burst := func(d *device, conv string, n int) {
			wg.Go(func() {
				for i := range n {
					d.send(t, conv, fmt.Sprintf("%s #%d", d.name, i))
				}
			})
		}
		burst(a1, direct, 10)
		burst(b, direct, 10)
		burst(a1, group, 10)
		burst(cr, group, 10)
		burst(a2, group, 5)
		wg.Wait()
		converge(t, direct, alice.lastSeq(t, direct), a1, a2, b)
		converge(t, group, alice.lastSeq(t, group), everyone...)
		// converge checked what the apps saw: every message once, in order.
		// On the wire a device may still see an event twice (a push racing
		// its first sync) and drop it; that is the protocol working.
		for _, d := range everyone {
			if s := d.client.Stats(); s.Sessions != 1 {
				t.Errorf("%s on a healthy system: %+v, want one session throughout", d.name, s)
			}
		}
		t.Logf("direct: %d events, group: %d events%s", alice.lastSeq(t, direct), alice.lastSeq(t, group), statsLine(everyone...))
	})

	t.Run("a repeated client_msg_id returns the original", func(t *testing.T) {
		req := &chatv1.SendMessageRequest{ConversationId: group, ClientMsgId: newClientMsgID(), Content: textContent("once")}
		first, err := bob.msgs.SendMessage(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := bob.msgs.SendMessage(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !again.GetDuplicate() || again.GetMessage().GetMessageId() != first.GetMessage().GetMessageId() ||
			again.GetMessage().GetSeq() != first.GetMessage().GetSeq() {
			t.Fatalf("retry = %v, want the original %v", again, first)
		}
		converge(t, group, alice.lastSeq(t, group), everyone...)
	})

	t.Run("a non-member can neither send nor read", func(t *testing.T) {
		_, err := dave.msgs.SendMessage(ctx, &chatv1.SendMessageRequest{ConversationId: group, ClientMsgId: "x", Content: textContent("hi")})
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("unary send by a non-member: %v, want not_found", err)
		}
		_, err = dave.msgs.ListMessages(ctx, &chatv1.ListMessagesRequest{ConversationId: group})
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("history read by a non-member: %v, want not_found", err)
		}
		d := newDevice(t, "dave connect@edge1", dave, connectEdge(edge1.url()))
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := d.client.Send(sctx, group, textContent("let me in")); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("stream send by a non-member: %v, want not_found", err)
		}
		if got := d.seqs(group); len(got) != 0 {
			t.Errorf("non-member's device received %v", got)
		}
	})

	t.Run("a send to a 1000-member group writes as many rows as a send to a 1:1", func(t *testing.T) {
		pool, err := pgxpool.New(ctx, c.dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		members := []string{bob.id, carol.id, dave.id}
		for i := len(members); i < 999; i++ {
			id := uuid.New()
			if _, err := pool.Exec(ctx, `INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')`, id, fmt.Sprintf("member-%d", i)); err != nil {
				t.Fatal(err)
			}
			members = append(members, id.String())
		}
		big, err := alice.convs.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: "everyone", MemberUserIds: members})
		if err != nil {
			t.Fatal(err)
		}
		if n := big.GetConversation().GetMemberCount(); n != 1000 {
			t.Fatalf("group has %d members, want 1000", n)
		}
		// Not counted: delivery receipts, which edges write from their
		// sessions' acks in batches (at most a row per device and
		// conversation per flush), whenever they flush, not per send.
		written := pgtest.CountWrites(t, pool, "deliveries")
		rows := func(conv string) int64 {
			written()
			a1.send(t, conv, "counted")
			return written()
		}
		one, thousand := rows(direct), rows(big.GetConversation().GetConversationId())
		t.Logf("rows written by one send: 1:1 = %d, 1000-member group = %d", one, thousand)
		if one == 0 || one != thousand {
			t.Fatalf("a send wrote %d rows in a 1:1 and %d in a 1000-member group", one, thousand)
		}
		converge(t, direct, alice.lastSeq(t, direct), a1, a2, b)
	})

	t.Run("a message lost on the bus reaches every device while the conversation goes quiet", func(t *testing.T) {
		// Everyone on edge1 (TestChaos covers what an edge's crash does to
		// delivery). Then freeze it, cut its pub/sub connections, and
		// publish while it cannot resubscribe: Redis drops that message.
		edge2.kill()
		waitFor(t, 15*time.Second, "every device on edge1", func() bool {
			for _, d := range everyone {
				if d.edgeID() != edge1ID {
					return false
				}
			}
			return true
		})
		rdb, _ := redistest.New(t)
		if err := edge1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		// Nobody listens on the group's channel then, so Redis drops what is
		// published there. A subscribe edge1 wrote just before it stopped
		// may still reach Redis: kill until none is left.
		channel := c.redisPrefix + bus.ConversationChannel(group)
		killed := 0
		for attempt := 0; ; attempt++ {
			killed += killPubSub(t, rdb, "waggle-edge-"+edge1ID)
			time.Sleep(50 * time.Millisecond)
			n, err := rdb.PubSubNumSub(ctx, channel).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n[channel] == 0 {
				break
			}
			if attempt == 10 {
				t.Fatalf("%s still has %d subscribers, want none", channel, n[channel])
			}
		}
		syncsBefore := map[string]int64{}
		for _, d := range everyone {
			syncsBefore[d.name] = d.client.Stats().Syncs
		}
		lost, err := alice.msgs.SendMessage(ctx, &chatv1.SendMessageRequest{ConversationId: group, ClientMsgId: newClientMsgID(), Content: textContent("lost on the bus")})
		if err != nil {
			t.Fatal(err)
		}
		if err := edge1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		resumed := time.Now()
		waitPubSub(t, rdb, "waggle-edge-"+edge1ID)
		// Nothing more is sent: the edge reads back what its group missed.
		convergeSoon(t, resumed, group, lost.GetMessage().GetSeq(), everyone...)
		// The edge read it back once for all of them: no device synced.
		for _, d := range everyone {
			if d.client.Stats().Syncs != syncsBefore[d.name] {
				t.Errorf("%s synced to get the lost message (%+v); the edge should have pushed it", d.name, d.client.Stats())
			}
		}
		t.Logf("killed %d pub/sub connection(s) of edge1; seq %d was lost on the bus and reached every device %v after edge1 resumed%s",
			killed, lost.GetMessage().GetSeq(), time.Since(resumed).Round(time.Millisecond), statsLine(everyone...))
	})
}

// pubSubClients returns the ids of name's connections that hold
// subscriptions.
func pubSubClients(t *testing.T, rdb *redis.Client, name string) []int64 {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, line := range strings.Split(list, "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] == name && fields["sub"] != "0" && fields["sub"] != "" {
			id, _ := strconv.ParseInt(fields["id"], 10, 64)
			ids = append(ids, id)
		}
	}
	return ids
}

func killPubSub(t *testing.T, rdb *redis.Client, name string) int {
	t.Helper()
	ids := pubSubClients(t, rdb, name)
	if len(ids) == 0 {
		t.Fatalf("no pub/sub connection named %s", name)
	}
	for _, id := range ids {
		if err := rdb.ClientKillByFilter(context.Background(), "ID", strconv.FormatInt(id, 10)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return len(ids)
}

func waitPubSub(t *testing.T, rdb *redis.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(pubSubClients(t, rdb, name)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not resubscribe", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
