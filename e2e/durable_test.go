package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// syncer is a device that only ever catches up with Sync from its last
// cursor, and keeps every event each page returned, duplicates included:
// what it holds shows whether Sync is exact, with no client dedup hiding a
// repeat.
type syncer struct {
	u      *user
	cursor string
	events map[string][]*chatv1.Event // by conversation, in the order returned
}

// catchUp calls Sync from the cursor until no page is left. A failed call
// (the server is down) leaves the cursor where the last applied page put it.
func (s *syncer) catchUp(ctx context.Context) error {
	for {
		res, err := s.u.msgs.Sync(ctx, &chatv1.SyncRequest{Cursor: s.cursor, PageSize: 200})
		if err != nil {
			return err
		}
		for _, ev := range res.GetEvents() {
			s.events[ev.GetConversationId()] = append(s.events[ev.GetConversationId()], ev)
		}
		s.cursor = res.GetNextCursor()
		if !res.GetHasMore() {
			return nil
		}
	}
}

// TestEmbeddedDurableWhenAcked SIGKILLs the embedded server while SDK
// clients send in five conversations, restarts it on the same data
// directory and address, and checks: every acked message is stored at the
// seq it was acked with, each sender's in the order sent; every
// conversation's seqs are gap-free; every SDK device ends up with exactly
// seqs 1..last of its conversations; and a device that syncs from its last
// cursor, before and after the crash, gets every event exactly once. The
// users' tokens, issued before the crash, keep working after it (the token
// key is kept in the data directory).
func TestEmbeddedDurableWhenAcked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server")
	}
	c := newEmbedded(t)
	addr := freeAddr(t)
	srv := c.startAt("serve", addr, "serve")
	ctx := context.Background()

	users := make([]*user, 6)
	devices := make([]*device, len(users))
	syncers := make([]*syncer, len(users))
	for i := range users {
		users[i] = register(t, srv.url(), fmt.Sprintf("user%d", i))
		devices[i] = newDevice(t, users[i].name, users[i], connectEdge(srv.url()))
		syncers[i] = &syncer{u: users[i], events: map[string][]*chatv1.Event{}}
	}
	type conversation struct {
		id      string
		members []int // indexes into users
	}
	convs := []conversation{
		{newGroup(t, users[0], users[1], users[2]), []int{0, 1, 2}},
		{newGroup(t, users[2], users[3], users[4], users[5]), []int{2, 3, 4, 5}},
		{newGroup(t, users[5], users[0], users[1], users[2], users[3], users[4]), []int{5, 0, 1, 2, 3, 4}},
		{newDirect(t, users[0], users[3]), []int{0, 3}},
		{newDirect(t, users[1], users[4]), []int{1, 4}},
	}

	// Two members of each conversation send, one message at a time each,
	// as fast as they are acked; the syncers poll meanwhile.
	type ack struct {
		sender int
		msg    *chatv1.Message
	}
	var (
		mu        sync.Mutex
		acked     []ack
		abandoned int
		nacked    atomic.Int64
	)
	load, stopLoad := context.WithCancel(ctx)
	var senders sync.WaitGroup
	for _, cv := range convs {
		for _, m := range cv.members[:2] {
			senders.Go(func() {
				for n := 0; load.Err() == nil; n++ {
					msg, err := devices[m].client.Send(load, cv.id, textContent(fmt.Sprintf("%s #%d", users[m].name, n)))
					mu.Lock()
					switch {
					case err == nil:
						acked = append(acked, ack{m, msg})
						nacked.Add(1)
					case load.Err() != nil:
						abandoned++
					default:
						t.Errorf("%s send: %v", users[m].name, err)
					}
					mu.Unlock()
				}
			})
		}
	}
	var syncing sync.WaitGroup
	for _, s := range syncers {
		syncing.Go(func() {
			for load.Err() == nil {
				_ = s.catchUp(ctx) // fails while the server is down
				time.Sleep(30 * time.Millisecond)
			}
		})
	}

	waitFor(t, 30*time.Second, "300 acked sends before the crash", func() bool { return nacked.Load() >= 300 })
	srv.kill()
	atKill := nacked.Load()
	t.Logf("SIGKILL after %d acked sends", atKill)
	srv = c.startAt("serve", addr, "serve")
	// Sends waiting through the crash are sent again on the new server
	// (same client_msg_id); keep the load on a while longer.
	waitFor(t, 30*time.Second, "200 more acked sends after the restart", func() bool { return nacked.Load() >= atKill+200 })
	stopLoad()
	senders.Wait()
	syncing.Wait()

	// Every device (the SDK's and the syncers) holds each conversation whole.
	owner := func(cv conversation) *user { return users[cv.members[0]] }
	last := map[string]uint64{}
	for _, cv := range convs {
		last[cv.id] = owner(cv).lastSeq(t, cv.id) // a token issued before the crash
		var members []*device
		for _, m := range cv.members {
			members = append(members, devices[m])
		}
		converge(t, cv.id, last[cv.id], members...)
	}
	for i, s := range syncers {
		if err := s.catchUp(ctx); err != nil {
			t.Fatalf("%s: sync after the restart: %v", users[i].name, err)
		}
		for _, cv := range convs {
			if !slices.Contains(cv.members, i) {
				continue
			}
			var got []uint64
			for _, ev := range s.events[cv.id] {
				got = append(got, ev.GetSeq())
			}
			if !slices.Equal(got, upTo(last[cv.id])) {
				t.Errorf("%s synced %s of %s, want seqs 1..%d exactly once in order", users[i].name, describe(got), cv.id, last[cv.id])
			}
		}
	}

	// Every acked message is stored where it was acked, and each sender's
	// messages are in the order it sent them.
	stored := map[string][]*chatv1.Event{} // checked above: seqs 1..last
	for _, cv := range convs {
		stored[cv.id] = syncers[cv.members[0]].events[cv.id]
	}
	lastSeqOf := map[int]map[string]uint64{} // sender → conversation → seq of its previous ack
	missing := 0
	for _, a := range acked {
		m := a.msg
		evs := stored[m.GetConversationId()]
		if m.GetSeq() == 0 || m.GetSeq() > uint64(len(evs)) || evs[m.GetSeq()-1].GetMessage().GetMessageId() != m.GetMessageId() {
			missing++
			if missing <= 5 {
				t.Errorf("acked message %s (seq %d of %s) is not stored at that seq", m.GetMessageId(), m.GetSeq(), m.GetConversationId())
			}
			continue
		}
		if lastSeqOf[a.sender] == nil {
			lastSeqOf[a.sender] = map[string]uint64{}
		}
		if prev := lastSeqOf[a.sender][m.GetConversationId()]; m.GetSeq() <= prev {
			t.Errorf("%s's message acked at seq %d after one at seq %d in %s", users[a.sender].name, m.GetSeq(), prev, m.GetConversationId())
		}
		lastSeqOf[a.sender][m.GetConversationId()] = m.GetSeq()
	}
	var total uint64
	for _, cv := range convs {
		total += last[cv.id]
	}
	t.Logf("acked %d sends (%d before the SIGKILL), %d abandoned when the load stopped; %d events stored in %d conversations; %d acked messages missing%s",
		len(acked), atKill, abandoned, total, len(convs), missing, statsLine(devices...))
}
