package chat_test

// The fanout (package fanout) with the chat service on each store backend:
// what it publishes for what the service commits. The translation of each
// kind of notice into its envelope is tested in package fanout.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/notify"
	"github.com/wagglechat/waggle/services/chat"
	"github.com/wagglechat/waggle/services/fanout"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// noRepublish turns off a fanout's start-up republish for tests that count
// publishes exactly: it would race with their first commits.
const noRepublish time.Duration = -1

// tap subscribes to channels and records every envelope published on them.
type tap struct {
	t    *testing.T
	b    bus.Bus
	mu   sync.Mutex
	got  map[string][]*busv1.Envelope
	seen chan struct{}
}

func newTap(t *testing.T, b bus.Bus, channels ...string) *tap {
	t.Helper()
	tp := &tap{t: t, b: b, got: map[string][]*busv1.Envelope{}, seen: make(chan struct{}, 1000)}
	subs, err := b.Subscribe(context.Background(), func(ch string, payload []byte) {
		env := &busv1.Envelope{}
		if err := proto.Unmarshal(payload, env); err != nil {
			t.Error(err)
			return
		}
		tp.mu.Lock()
		tp.got[ch] = append(tp.got[ch], env)
		tp.mu.Unlock()
		tp.seen <- struct{}{}
	}, channels...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range subs {
			s.Close()
		}
	})
	return tp
}

// seqs returns the seqs of the events published on channel so far.
func (tp *tap) seqs(channel string) []uint64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []uint64
	for _, env := range tp.got[channel] {
		for _, ev := range env.GetPush().GetEvents() {
			out = append(out, ev.GetSeq())
		}
	}
	return out
}

// forget drops what channels carried so far, once it has all arrived: the
// memory bus delivers from a queue, so a tap may still get what was
// published just before it subscribed.
func (tp *tap) forget(channels ...string) {
	tp.t.Helper()
	for _, ch := range channels {
		tp.settle(ch)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	clear(tp.got)
}

func (tp *tap) envelopes(channel string) []*busv1.Envelope {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.got[channel])
}

// settle publishes a marker on channel and waits for it: the bus keeps a
// channel's order, so everything published there before has arrived.
func (tp *tap) settle(channel string) {
	tp.t.Helper()
	marker, _ := proto.Marshal(&busv1.Envelope{ExcludeUserIds: []string{"marker"}})
	if err := tp.b.Publish(context.Background(), channel, marker); err != nil {
		tp.t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		tp.mu.Lock()
		envs := tp.got[channel]
		done := len(envs) > 0 && slices.Equal(envs[len(envs)-1].GetExcludeUserIds(), []string{"marker"})
		if done {
			tp.got[channel] = envs[:len(envs)-1]
		}
		tp.mu.Unlock()
		if done {
			return
		}
		select {
		case <-tp.seen:
		case <-deadline:
			tp.t.Fatalf("marker on %s never arrived", channel)
		}
	}
}

func runFanout(t *testing.T, f *fanout.Fanout) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A group's events go once on the group's channel whatever its size, and
// the events that make users members also on those users' channels.
func TestFanoutPublishesOncePerTopic(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		_, carolID := f.user("carol")
		b := bus.NewMemory()
		defer b.Close()
		fan := fanout.New(fanout.Config{RepublishWindow: noRepublish}, f.store, nil, b, discardLog())
		chat.SetNotifier(f.svc, fan)
		runFanout(t, fan)

		group := f.group(alice, bobID)
		channels := []string{bus.ConversationChannel(group), bus.UserChannel(aliceID), bus.UserChannel(bobID), bus.UserChannel(carolID)}
		tp := newTap(t, b, channels...)
		tp.forget(channels...) // the group's creation
		f.send(alice, group, "hello")
		if _, err := f.svc.AddMembers(alice, &chatv1.AddMembersRequest{ConversationId: group, UserIds: []string{carolID}}); err != nil {
			t.Fatal(err)
		}
		direct, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: bobID})
		if err != nil {
			t.Fatal(err)
		}
		dm := direct.GetConversation().GetConversationId()
		f.send(alice, dm, "psst")
		for _, ch := range channels {
			tp.settle(ch)
		}
		// The group: seq 2 (message) and 3 (members added) on its channel.
		if got := tp.seqs(bus.ConversationChannel(group)); !slices.Equal(got, []uint64{2, 3}) {
			t.Errorf("group channel carried seqs %v, want [2 3]", got)
		}
		// Carol, added at seq 3, gets that event on her own channel too; the
		// direct conversation's events go to both of its users.
		if got := tp.seqs(bus.UserChannel(carolID)); !slices.Equal(got, []uint64{3}) {
			t.Errorf("carol's channel carried seqs %v, want [3]", got)
		}
		for _, u := range []string{aliceID, bobID} {
			var convs []string
			for _, env := range tp.envelopes(bus.UserChannel(u)) {
				for _, ev := range env.GetPush().GetEvents() {
					convs = append(convs, fmt.Sprint(ev.GetConversationId() == dm, ev.GetSeq()))
				}
			}
			if want := []string{"true 1", "true 2"}; !slices.Equal(convs, want) {
				t.Errorf("user channel of %s carried %v, want the direct conversation's seqs 1 and 2", u, convs)
			}
		}
	})
}

// An event goes out at once even when its predecessor never reaches this
// process, however many other conversations do the same: ordering and
// repair are the edges' job.
func TestFanoutNeverHoldsAnEventBehindOtherConversations(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		b := bus.NewMemory()
		defer b.Close()
		fan := fanout.New(fanout.Config{RepublishWindow: noRepublish}, f.store, nil, b, discardLog())
		runFanout(t, fan)
		ev := func(conv string, seq uint64) chat.Committed {
			return chat.Committed{Event: &chatv1.Event{ConversationId: conv, Seq: seq}}
		}
		stuck := f.group(alice)
		tp := newTap(t, b, bus.ConversationChannel(stuck))
		fan.Notify(context.Background(), ev(stuck, 1))
		fan.Notify(context.Background(), ev(stuck, 3)) // 2 went through another process
		for range 10 {
			other := f.group(alice)
			fan.Notify(context.Background(), ev(other, 10))
			fan.Notify(context.Background(), ev(other, 12))
		}
		tp.settle(bus.ConversationChannel(stuck))
		if got := tp.seqs(bus.ConversationChannel(stuck)); !slices.Equal(got, []uint64{1, 3}) {
			t.Fatalf("published %v, want [1 3] at once", got)
		}
	})
}

// With several chat processes each publishes what it committed: an event
// is never published twice.
func TestTwoFanoutsPublishEachEventOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		conv := f.group(alice) // seq 1
		f.send(alice, conv, "two")
		f.send(alice, conv, "three")
		b := bus.NewMemory()
		defer b.Close()
		tp := newTap(t, b, bus.ConversationChannel(conv))
		one := fanout.New(fanout.Config{RepublishWindow: noRepublish}, f.store, nil, b, discardLog())
		two := fanout.New(fanout.Config{RepublishWindow: noRepublish}, f.store, nil, b, discardLog())
		runFanout(t, one)
		runFanout(t, two)
		ev := func(seq uint64) chat.Committed {
			return chat.Committed{Event: &chatv1.Event{ConversationId: conv, Seq: seq}}
		}
		one.Notify(context.Background(), ev(1))
		two.Notify(context.Background(), ev(2))
		one.Notify(context.Background(), ev(3)) // one never sees 2
		tp.settle(bus.ConversationChannel(conv))
		got := tp.seqs(bus.ConversationChannel(conv))
		slices.Sort(got)
		if fmt.Sprint(got) != "[1 2 3]" {
			t.Fatalf("published seqs %v, want each of 1, 2, 3 once", got)
		}
	})
}

// flaky fails its first n publishes.
type flaky struct {
	bus.Publisher
	mu sync.Mutex
	n  int
}

func (p *flaky) PublishBatch(ctx context.Context, msgs []bus.Message) error {
	p.mu.Lock()
	fail := p.n > 0
	p.n--
	p.mu.Unlock()
	if fail {
		return errors.New("redis is down")
	}
	return p.Publisher.PublishBatch(ctx, msgs)
}

// A publish Redis refuses is retried, in order, until it goes through.
func TestFanoutRetriesRefusedPublishes(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		conv := f.group(alice)
		b := bus.NewMemory()
		defer b.Close()
		tp := newTap(t, b, bus.ConversationChannel(conv))
		fan := fanout.New(fanout.Config{PublishWait: time.Millisecond, RepublishWindow: noRepublish}, f.store, nil, &flaky{Publisher: b, n: 3}, discardLog())
		runFanout(t, fan)
		for seq := range uint64(5) {
			fan.Notify(context.Background(), chat.Committed{Event: &chatv1.Event{ConversationId: conv, Seq: seq + 1}})
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(tp.seqs(bus.ConversationChannel(conv))) < 5 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := tp.seqs(bus.ConversationChannel(conv)); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
			t.Fatalf("published %v after Redis refused three times, want 1..5 in order", got)
		}
	})
}

func TestRevokeDeviceClosesItsSessions(t *testing.T) {
	b := bus.NewMemory()
	defer b.Close()
	fan := fanout.New(fanout.Config{}, nil, nil, b, discardLog())
	tp := newTap(t, b, bus.UserChannel("u1"))
	if err := fan.RevokeDevice(context.Background(), auth.Identity{UserID: "u1", DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	tp.settle(bus.UserChannel("u1"))
	envs := tp.envelopes(bus.UserChannel("u1"))
	if len(envs) != 1 || len(envs[0].GetCloseDevices()) != 1 || envs[0].GetCloseDevices()[0].GetDeviceId() != "d1" {
		t.Fatalf("user channel carried %v, want one close_devices for d1", envs)
	}
}

// locator places the listed users online; block, if set, holds every
// lookup until it is closed.
type locator struct {
	online []string
	block  chan struct{}
}

func (l locator) LookupSessions(ctx context.Context, req *presencev1.LookupSessionsRequest) (*presencev1.LookupSessionsResponse, error) {
	if l.block != nil {
		select {
		case <-l.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res := &presencev1.LookupSessionsResponse{}
	for _, u := range req.GetUserIds() {
		if slices.Contains(l.online, u) {
			res.Sessions = append(res.Sessions, &presencev1.Session{SessionId: "s-" + u, UserId: u, EdgeId: "e1"})
		}
	}
	return res, nil
}

func TestOfflineMembersGetPushesUnlessMuted(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		carol, carolID := f.user("carol")
		_, daveID := f.user("dave")
		conv := f.group(alice, bobID, carolID, daveID)
		if _, err := f.svc.SetConversationMuted(carol, &chatv1.SetConversationMutedRequest{ConversationId: conv, Muted: true}); err != nil {
			t.Fatal(err)
		}
		f.send(alice, conv, "earlier") // unread for everyone but alice

		b := bus.NewMemory()
		defer b.Close()
		got := make(chan notify.Notification, 10)
		fan := fanout.New(fanout.Config{Push: notify.Func(func(n notify.Notification) { got <- n }), RepublishWindow: noRepublish}, f.store,
			locator{online: []string{aliceID, daveID}}, b, discardLog())
		chat.SetNotifier(f.svc, fan)
		runFanout(t, fan)

		msg := f.send(alice, conv, "are you there?")
		select {
		case n := <-got:
			// bob is offline and not muted; carol muted; dave online; alice sent it.
			if n.UserID != bobID || n.Badge != 2 || n.Preview != "are you there?" || n.Seq != msg.GetSeq() || n.ConversationTitle != "g" {
				t.Fatalf("notification %+v, want bob with badge 2", n)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no offline push")
		}
		// A later message's push proves the first had no second notification:
		// the worker handles messages in order.
		msg = f.send(alice, conv, "hello?")
		select {
		case n := <-got:
			if n.UserID != bobID || n.Seq != msg.GetSeq() {
				t.Fatalf("notification %+v, want only bob's for seq %d", n, msg.GetSeq())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no offline push for the second message")
		}
	})
}

// Working out offline pushes never delays a live push: the live publish
// goes out while the session lookup behind the offline push is stuck.
func TestOfflinePushNeverDelaysLivePushes(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		_, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		b := bus.NewMemory()
		defer b.Close()
		stuck := make(chan struct{})
		defer close(stuck)
		fan := fanout.New(fanout.Config{Push: notify.Func(func(notify.Notification) {}), RepublishWindow: noRepublish}, f.store, locator{block: stuck}, b, discardLog())
		chat.SetNotifier(f.svc, fan)
		runFanout(t, fan)
		tp := newTap(t, b, bus.ConversationChannel(conv))
		for i := range 3 {
			f.send(alice, conv, fmt.Sprint("m", i))
		}
		tp.settle(bus.ConversationChannel(conv))
		if got := tp.seqs(bus.ConversationChannel(conv)); !slices.Equal(got, []uint64{2, 3, 4}) {
			t.Fatalf("live pushes %v while offline lookups hang, want [2 3 4]", got)
		}
	})
}

// A chat process killed between a commit and its publish: the next fanout
// to start publishes each recently changed conversation's newest event
// again, so edges find the hole even if nothing else is sent there.
func TestStartRepublishesTheNewestEventOfRecentConversations(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t) // its service commits and publishes nothing
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		group := f.group(alice, bobID)
		f.send(alice, group, "one")
		last := f.send(alice, group, "unannounced")
		direct, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: bobID})
		if err != nil {
			t.Fatal(err)
		}
		dm := direct.GetConversation().GetConversationId()
		lastDirect := f.send(alice, dm, "unannounced too")
		old := f.group(alice, bobID)
		f.send(alice, old, "long ago")
		if err := f.db.exec(t.Context(), `UPDATE conversations SET update_time = $2 WHERE id = $1`, old, f.db.time(time.Now().Add(-time.Hour))); err != nil {
			t.Fatal(err)
		}

		b := bus.NewMemory()
		defer b.Close()
		channels := []string{bus.ConversationChannel(group), bus.UserChannel(aliceID), bus.UserChannel(bobID), bus.ConversationChannel(old)}
		tp := newTap(t, b, channels...)
		runFanout(t, fanout.New(fanout.Config{}, f.store, nil, b, discardLog()))
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if len(tp.seqs(channels[0])) > 0 && len(tp.seqs(channels[1])) > 0 && len(tp.seqs(channels[2])) > 0 {
				break
			}
		}
		for _, ch := range channels {
			tp.settle(ch)
		}
		if got := tp.seqs(bus.ConversationChannel(old)); len(got) != 0 {
			t.Errorf("a conversation last changed an hour ago got %v again", got)
		}
		if got := tp.seqs(bus.ConversationChannel(group)); !slices.Equal(got, []uint64{last.GetSeq()}) {
			t.Errorf("the group's channel got seqs %v, want its newest, %d", got, last.GetSeq())
		}
		for _, u := range []string{aliceID, bobID} {
			if got := tp.seqs(bus.UserChannel(u)); !slices.Equal(got, []uint64{lastDirect.GetSeq()}) {
				t.Errorf("%s's channel got seqs %v, want the direct conversation's newest, %d", u, got, lastDirect.GetSeq())
			}
		}
	})
}
