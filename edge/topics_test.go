package edge

import (
	"slices"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

func message(conv string, seq uint64) *chatv1.Event {
	return messagePush(conv, seq).GetEvents()[0]
}

func membersAdded(conv string, seq uint64, users ...string) *chatv1.Event {
	return &chatv1.Event{ConversationId: conv, Seq: seq, Kind: &chatv1.Event_MembersAdded{MembersAdded: &chatv1.MembersAdded{UserIds: users}}}
}

func memberRemoved(conv string, seq uint64, user string) *chatv1.Event {
	return &chatv1.Event{ConversationId: conv, Seq: seq, Kind: &chatv1.Event_MemberRemoved{MemberRemoved: &chatv1.MemberRemoved{UserId: user}}}
}

func events(evs ...*chatv1.Event) *busv1.Envelope {
	return &busv1.Envelope{Push: &edgev1.Push{Events: evs}}
}

// received returns the seqs of conv pushed to c before a ping's pong.
func (c *client) received(conv string) []uint64 {
	c.t.Helper()
	var out []uint64
	for _, f := range c.ping(99) {
		for _, ev := range f.GetPush().GetEvents() {
			if ev.GetConversationId() == conv {
				out = append(out, ev.GetSeq())
			}
		}
	}
	return out
}

// waitReceived reads pushes until c holds want of conv, in that order.
func (c *client) waitReceived(conv string, want ...uint64) {
	c.t.Helper()
	var got []uint64
	deadline := time.Now().Add(waitTime)
	for len(got) < len(want) && time.Now().Before(deadline) {
		got = append(got, c.received(conv)...)
	}
	if !slices.Equal(got, want) {
		c.t.Fatalf("received %v of %s, want %v", got, conv, want)
	}
}

func TestGroupEventsReachMembersFromTheirJoinToTheirRemoval(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	te.streams.groups["u2"] = []*chatv1.GroupMembership{{ConversationId: "g1", JoinedSeq: 2, LastSeq: 3}}
	te.run(t)
	u1, u2, u3 := te.connect(t, "tok:u1:d1"), te.connect(t, "tok:u2:d1"), te.connect(t, "tok:u3:d1")
	if !te.bus.subscribed(bus.ConversationChannel("g1")) {
		t.Fatal("the edge does not listen to its members' group")
	}
	te.toGroup(t, "g1", events(message("g1", 4)))
	// u3 is added: the event comes on u3's own channel and the group's.
	add := events(membersAdded("g1", 5, "u3"))
	te.toUsers(t, add, "u3")
	te.toGroup(t, "g1", add)
	te.toGroup(t, "g1", events(message("g1", 6)))
	te.toGroup(t, "g1", events(memberRemoved("g1", 7, "u2")))
	te.toGroup(t, "g1", events(message("g1", 8)))

	u1.waitReceived("g1", 4, 5, 6, 7, 8)
	u2.waitReceived("g1", 4, 5, 6, 7) // its removal, nothing after
	u3.waitReceived("g1", 5, 6, 7, 8) // from its addition, once
	for _, c := range []*client{u1, u2, u3} {
		if got := c.received("g1"); len(got) != 0 {
			t.Fatalf("%s got more: %v", c.welcome.GetUserId(), got)
		}
	}
	if te.streams.readCount() != 1 {
		t.Fatalf("%d ranges read, want only the new topic's catch-up", te.streams.readCount())
	}
}

func TestGroupEventsAreOrderedAndHolesReadBackOnce(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	te.streams.groups["u2"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	te.run(t)
	u1, u2 := te.connect(t, "tok:u1:d1"), te.connect(t, "tok:u2:d1")
	waitUntil(t, "the catch-up", func() bool { return te.streams.readCount() == 1 })

	// Two publishers race: 5 before 4. No read needed.
	te.toGroup(t, "g1", events(message("g1", 5)))
	te.toGroup(t, "g1", events(message("g1", 4)))
	// 6 and 7 are lost on the bus: after holdWait they are read back, once
	// for both sessions.
	te.streams.store(message("g1", 6), message("g1", 7))
	te.toGroup(t, "g1", events(message("g1", 8)))
	te.toGroup(t, "g1", events(message("g1", 8))) // a repeat
	for _, c := range []*client{u1, u2} {
		c.waitReceived("g1", 4, 5, 6, 7, 8)
	}
	te.streams.mu.Lock()
	reads := slices.Clone(te.streams.reads)
	te.streams.mu.Unlock()
	if len(reads) != 2 || reads[1].GetId() != "g1" || reads[1].GetFromSeq() != 6 || reads[1].GetToSeq() != 7 {
		t.Fatalf("ranges read %v, want the catch-up and then g1 6..7 once", reads)
	}
}

func TestTopicCatchesUpAfterSubscribing(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	// Committed after the routes were read, published before the
	// subscription took effect: nothing will show the hole.
	te.streams.store(message("g1", 4), message("g1", 5))
	te.run(t)
	te.connect(t, "tok:u1:d1").waitReceived("g1", 4, 5)
}

func TestJoiningAGroupSubscribesToItAndCatchesUp(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.run(t)
	u1 := te.connect(t, "tok:u1:d1")
	if te.bus.subscribed(bus.ConversationChannel("g9")) {
		t.Fatal("subscribed to a group before joining it")
	}
	te.streams.store(message("g9", 4))
	te.toUsers(t, events(membersAdded("g9", 3, "u1")), "u1")
	u1.waitReceived("g9", 3, 4)
	waitUntil(t, "the group subscription", func() bool { return te.bus.subscribed(bus.ConversationChannel("g9")) })
	te.toGroup(t, "g9", events(message("g9", 5)))
	u1.waitReceived("g9", 5)
}

func TestSubscriptionsEndWithTheLastSession(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1"}}
	te.streams.groups["u2"] = []*chatv1.GroupMembership{{ConversationId: "g1"}}
	te.run(t)
	phone, laptop, other := te.connect(t, "tok:u1:phone"), te.connect(t, "tok:u1:laptop"), te.connect(t, "tok:u2:d1")
	loads := te.streams.loads
	closeClient := func(c *client) {
		c.conn.cancel()
		c.wait()
	}
	closeClient(phone)
	if !te.bus.subscribed(bus.UserChannel("u1")) {
		t.Fatal("u1's channel dropped while its laptop is connected")
	}
	closeClient(laptop)
	waitUntil(t, "u1's channel to go", func() bool { return !te.bus.subscribed(bus.UserChannel("u1")) })
	if !te.bus.subscribed(bus.ConversationChannel("g1")) {
		t.Fatal("the group dropped while u2 is in it")
	}
	closeClient(other)
	waitUntil(t, "the group to go", func() bool { return !te.bus.subscribed(bus.ConversationChannel("g1")) })
	if te.streams.loads != loads {
		t.Fatal("a session's end loaded routes")
	}
}

func TestTypingInAGroupSkipsTheTypistAndNonMembers(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1"}}
	te.streams.groups["u2"] = []*chatv1.GroupMembership{{ConversationId: "g1"}}
	te.run(t)
	u1, u2, u3 := te.connect(t, "tok:u1:d1"), te.connect(t, "tok:u2:d1"), te.connect(t, "tok:u3:d1")
	typing := &edgev1.Push{Typing: []*chatv1.TypingEvent{{ConversationId: "g1", UserId: "u1", Typing: true}}}
	te.toGroup(t, "g1", &busv1.Envelope{Push: typing, ExcludeUserIds: []string{"u1"}})
	if p := u2.recv().GetPush(); len(p.GetTyping()) != 1 || p.GetPushId() != 0 {
		t.Fatalf("u2 got %v, want the typing push", p)
	}
	for _, c := range []*client{u1, u3} {
		if frames := c.ping(1); len(frames) != 0 {
			t.Fatalf("%s got %v", c.welcome.GetUserId(), frames)
		}
	}
}

func TestDirectConversationsAreOrderedPerUser(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.run(t)
	a, b := te.connect(t, "tok:ua:d1"), te.connect(t, "tok:ub:d1")
	te.streams.store(message("dm", 2))
	for _, seq := range []uint64{1, 3, 3} {
		te.toUsers(t, events(message("dm", seq)), "ua", "ub")
	}
	// 2 was lost: read back, once per user's stream.
	a.waitReceived("dm", 1, 2, 3)
	b.waitReceived("dm", 1, 2, 3)
}

func TestResubscribedCatchesUpAndSyncsWhatItCannotRead(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	te.run(t)
	u1 := te.connect(t, "tok:u1:d1")
	u2 := te.connect(t, "tok:u2:d1")
	te.toGroup(t, "g1", events(message("g1", 4)))
	u1.waitReceived("g1", 4)
	// While the bus was down: g1 got 5 and 6, and u2 a message in a direct
	// conversation this edge never saw.
	te.streams.store(message("g1", 4), message("g1", 5), message("g1", 6))
	te.streams.changes = []*chatv1.DirectChange{{UserId: "u2", ConversationId: "dm", LastSeq: 1}}
	te.Resubscribed(bus.Resubscribed{Channels: []string{bus.ConversationChannel("g1"), bus.UserChannel("u1"), bus.UserChannel("u2")}, Since: time.Now()})
	u1.waitReceived("g1", 5, 6)
	deadline := time.Now().Add(waitTime)
	for {
		frames := u2.ping(5)
		if slices.ContainsFunc(frames, func(f *edgev1.ServerFrame) bool { return f.GetSyncRequired() != nil }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("u2 was not told to sync")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := te.Stats(); s.Resubscribes != 1 || s.SyncsRequested != 1 {
		t.Fatalf("stats %+v, want one resubscribe and one user told to sync", s)
	}
	if frames := u1.ping(6); len(frames) != 0 {
		t.Fatalf("u1, whose streams were read back, got %v", frames)
	}
}

func TestAHoleThatCannotBeReadMakesItsMembersSync(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	te.run(t)
	u1 := te.connect(t, "tok:u1:d1")
	waitUntil(t, "the catch-up", func() bool { return te.streams.readCount() == 1 })
	te.streams.mu.Lock()
	te.streams.fail = true
	te.streams.mu.Unlock()
	te.toGroup(t, "g1", events(message("g1", 6)))
	var synced bool
	var got []uint64
	deadline := time.Now().Add(waitTime)
	for (!synced || len(got) == 0) && time.Now().Before(deadline) {
		for _, f := range u1.ping(7) {
			synced = synced || f.GetSyncRequired() != nil
			got = append(got, seqsOf(f.GetPush())...)
		}
	}
	if !synced || !slices.Equal(got, []uint64{6}) {
		t.Fatalf("synced %v, got %v; want sync_required and then seq 6", synced, got)
	}
	if n := te.streams.readCount(); n != 1+repairAttempts {
		t.Fatalf("%d reads, want the catch-up and %d attempts", n, repairAttempts)
	}
}

// A route load read before membership changes the topic has applied since
// is brought up to date from the changes the topic keeps.
func TestJoinReconcilesAnOlderLoad(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	te.run(t)
	te.connect(t, "tok:u1:d1")
	te.connect(t, "tok:u2:d1")
	te.connect(t, "tok:u3:d1")
	te.toGroup(t, "g1", events(membersAdded("g1", 4, "x")))
	te.toGroup(t, "g1", events(memberRemoved("g1", 5, "u2")))
	te.toGroup(t, "g1", events(membersAdded("g1", 6, "u3")))
	// Loads read at seq 3: u2 as a member (removed at 5 since), u3 not
	// yet one (added at 6 since, which the topic saw while u3 had a route).
	for _, user := range []string{"u2", "u3"} {
		if _, ok := te.topics.join("g1", user, 0, 3); !ok {
			t.Fatalf("join of %s not reconciled", user)
		}
	}
	tp := te.topics.lookup("g1")
	tp.mu.Lock()
	_, u2 := tp.members["u2"]
	sp3, u3 := tp.members["u3"]
	tp.changesFloor = 4
	tp.mu.Unlock()
	if u2 || !u3 || sp3.joined != 5 {
		t.Fatalf("u2 member %v, u3 %v from %d; want u2 gone and u3 from seq 6", u2, u3, sp3.joined)
	}
	if _, ok := te.topics.join("g1", "u2", 0, 3); ok {
		t.Fatal("joined with a load older than the changes kept")
	}
	// A topic made from a load knows no change before it: an older load
	// cannot be reconciled either.
	if _, ok := te.topics.join("g2", "u2", 0, 10); !ok {
		t.Fatal("a new topic's first join refused")
	}
	if _, ok := te.topics.join("g2", "u3", 0, 5); ok {
		t.Fatal("joined a new topic with a load older than the one it was made from")
	}
}

// A user's session that opens while its previous one's route is being torn
// down keeps the group: the old route's leave must not drop the new one's
// membership.
func TestReconnectDuringTeardownKeepsTheGroup(t *testing.T) {
	te := newTestEdge(t, testConfig())
	te.streams.groups["u1"] = []*chatv1.GroupMembership{{ConversationId: "g1", LastSeq: 3}}
	te.run(t)
	first := te.connect(t, "tok:u1:d1")
	old := te.routes.lookup("u1")
	// The new session's route replaces the old one before the old one's
	// teardown reaches the group.
	te.routes.mu.Lock()
	delete(te.routes.byUser, "u1")
	te.routes.mu.Unlock()
	second := te.connect(t, "tok:u1:d2")
	te.topics.leave(old, "g1")
	te.toGroup(t, "g1", events(message("g1", 4)))
	second.waitReceived("g1", 4)
	_ = first
}
