package chat

import (
	"context"
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
)

// sessionsOn places every user on one edge.
type sessionsOn string

func (edge sessionsOn) LookupSessions(_ context.Context, req *presencev1.LookupSessionsRequest) (*presencev1.LookupSessionsResponse, error) {
	res := &presencev1.LookupSessionsResponse{}
	for _, u := range req.GetUserIds() {
		res.Sessions = append(res.Sessions, &presencev1.Session{SessionId: "s-" + u, UserId: u, EdgeId: string(edge)})
	}
	return res, nil
}

// Notify calls arrive in any order after their commits; the fanout
// publishes each conversation's events in seq order.
func TestFanoutPublishesInSeqOrder(t *testing.T) {
	f := newFixture(t)
	alice, _ := f.user("alice")
	conv := f.group(alice) // seq 1
	for i := range 6 {
		f.send(alice, conv, fmt.Sprint("m", i)) // seqs 2..7, committed in order
	}
	b := bus.NewMemory()
	defer b.Close()
	fan := NewFanout(FanoutConfig{}, f.db, sessionsOn("e1"), b, slog.New(slog.NewTextHandler(io.Discard, nil)))

	var mu sync.Mutex
	var got []uint64
	sub, err := b.Subscribe(context.Background(), bus.EdgeChannel("e1"), func(payload []byte) {
		var env busv1.Envelope
		if err := proto.Unmarshal(payload, &env); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range env.GetPush().GetEvents() {
			got = append(got, ev.GetSeq())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fan.Run(ctx)
	ev := func(seq uint64) Committed {
		return Committed{Event: &chatv1.Event{ConversationId: conv, Seq: seq}}
	}
	fan.Notify(ev(1))
	for _, seq := range []uint64{3, 5, 2, 4} {
		fan.Notify(ev(seq))
	}
	fan.Notify(ev(7)) // 6 is never notified: after the wait it is read back
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 7 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []uint64{1, 2, 3, 4, 5, 6, 7}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("published %v, want %v", got, want)
	}
}

func TestRevokeDeviceClosesItsSessions(t *testing.T) {
	b := bus.NewMemory()
	defer b.Close()
	fan := NewFanout(FanoutConfig{}, nil, sessionsOn("e7"), b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	got := make(chan *busv1.Envelope, 1)
	sub, err := b.Subscribe(context.Background(), bus.EdgeChannel("e7"), func(payload []byte) {
		var env busv1.Envelope
		if err := proto.Unmarshal(payload, &env); err != nil {
			t.Error(err)
		}
		got <- &env
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := fan.RevokeDevice(context.Background(), auth.Identity{UserID: "u1", DeviceID: ""}); err != nil {
		t.Fatal(err)
	}
	select {
	case env := <-got:
		if d := env.GetCloseDevices(); len(d) != 1 || d[0].GetUserId() != "u1" {
			t.Fatalf("envelope %v, want close_devices for u1", env)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no envelope reached the edge holding the device")
	}
}

// onlineOnly places the listed users on edge e1; everyone else is offline.
type onlineOnly []string

func (on onlineOnly) LookupSessions(_ context.Context, req *presencev1.LookupSessionsRequest) (*presencev1.LookupSessionsResponse, error) {
	res := &presencev1.LookupSessionsResponse{}
	for _, u := range req.GetUserIds() {
		if slices.Contains(on, u) {
			res.Sessions = append(res.Sessions, &presencev1.Session{SessionId: "s-" + u, UserId: u, EdgeId: "e1"})
		}
	}
	return res, nil
}

func TestOfflineMembersGetPushesUnlessMuted(t *testing.T) {
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
	fan := NewFanout(FanoutConfig{Push: notify.Func(func(n notify.Notification) { got <- n })}, f.db,
		onlineOnly{aliceID, daveID}, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.svc.notify = fan
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fan.Run(ctx)

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
	select {
	case n := <-got:
		t.Fatalf("unexpected second notification %+v", n)
	case <-time.After(200 * time.Millisecond):
	}
}
