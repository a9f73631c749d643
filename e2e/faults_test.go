package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
	"github.com/wagglechat/waggle/internal/redistest"
)

// repairLimit is how soon after a dependency is back every online device
// must hold every acknowledged message, with nobody sending more.
const repairLimit = 5 * time.Second

// convergeSoon is converge, and fails if it took longer than repairLimit
// after back.
func convergeSoon(t *testing.T, back time.Time, conv string, last uint64, devices ...*device) {
	t.Helper()
	converge(t, conv, last, devices...)
	took := time.Since(back)
	t.Logf("devices held seqs 1..%d of %s %v after the dependency came back", last, conv, took.Round(time.Millisecond))
	if took > repairLimit {
		t.Errorf("devices held seqs 1..%d of %s %v after the dependency came back, want within %v", last, conv, took.Round(time.Millisecond), repairLimit)
	}
}

// TestDeliveryRecoversFromDependencyFailures stops presence and Redis in
// turn under a deployment of separate processes on a throwaway Redis, sends
// while each is down, and lets the conversations go quiet: what was acked
// must reach every online device soon after the dependency is back, with
// no further message to reveal a gap.
func TestDeliveryRecoversFromDependencyFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a redis-server and four processes")
	}
	srv := redistest.StartServer(t)
	c := newClusterOn(t, "redis://"+srv.Addr()+"/0")
	chatAddr, presAddr := freeAddr(t), freeAddr(t)
	presArgs := []string{"--chat-url", "http://" + chatAddr}
	pres := c.startAt("presence", presAddr, "presence", presArgs...)
	chat := c.startAt("chat", chatAddr, "chat", "--presence-url", pres.url())
	edgeArgs := []string{"--chat-url", chat.url(), "--presence-url", pres.url()}
	edge1 := c.start("edge1", "edge", edgeArgs...)
	edge2 := c.start("edge2", "edge", edgeArgs...)

	alice := register(t, chat.url(), "alice")
	bob := register(t, chat.url(), "bob")
	carol := register(t, chat.url(), "carol")
	carol2 := login(t, chat.url(), "carol")
	ctx := context.Background()
	group := newGroup(t, alice, bob, carol)
	direct := newDirect(t, alice, bob)
	a := newDevice(t, "alice@edge1", alice, connectEdge(edge1.url()))
	b := newDevice(t, "bob@edge2", bob, connectEdge(edge2.url()))
	c1 := newDevice(t, "carol/1@edge1", carol, connectEdge(edge1.url()))
	c2 := newDevice(t, "carol/2@edge2", carol2, connectEdge(edge2.url()))
	inGroup, inDirect := []*device{a, b, c1, c2}, []*device{a, b}

	// bob's presence as alice sees it, from the presence role.
	presence := presencev1connect.NewPresenceServiceClient(h2c(), pres.url(), bearer(alice.token))
	bobOnline := func() bool {
		res, err := presence.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{bob.id}})
		return err == nil && len(res.GetPresences()) == 1 && res.GetPresences()[0].GetStatus() == presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE
	}
	waitFor(t, 10*time.Second, "bob online", bobOnline)

	sendSome := func(t *testing.T, why string) {
		for i := range 3 {
			a.send(t, group, fmt.Sprintf("%s #%d from alice", why, i))
			b.send(t, direct, fmt.Sprintf("%s #%d from bob", why, i))
			c2.send(t, group, fmt.Sprintf("%s #%d from carol", why, i))
		}
	}

	t.Run("presence killed and restarted", func(t *testing.T) {
		pres.kill()
		sendSome(t, "presence down")
		pres = c.startAt("presence", presAddr, "presence", presArgs...)
		back := time.Now()
		convergeSoon(t, back, group, alice.lastSeq(t, group), inGroup...)
		convergeSoon(t, back, direct, alice.lastSeq(t, direct), inDirect...)
		t.Logf("%d group and %d direct messages stored, all delivered%s", alice.lastSeq(t, group), alice.lastSeq(t, direct), statsLine(inGroup...))
	})

	t.Run("Redis restarted", func(t *testing.T) {
		srv.Stop()
		sendSome(t, "redis down")
		srv.Start() // empty: the registry and the bus subscriptions are gone
		back := time.Now()
		convergeSoon(t, back, group, alice.lastSeq(t, group), inGroup...)
		convergeSoon(t, back, direct, alice.lastSeq(t, direct), inDirect...)
		// The edges registered their sessions again at once: bob shows
		// online without waiting for the next renewal.
		waitFor(t, repairLimit, "bob shown online again", bobOnline)
		if took := time.Since(back); took > repairLimit {
			t.Errorf("bob shown online %v after Redis came back", took.Round(time.Millisecond))
		}
		for _, d := range inGroup {
			if d.client.Stats().Sessions != 1 {
				t.Errorf("%s reconnected: %+v; its edge should have kept the session", d.name, d.client.Stats())
			}
		}
		t.Logf("%d group and %d direct messages stored, all delivered%s", alice.lastSeq(t, group), alice.lastSeq(t, direct), statsLine(inGroup...))
	})
}
