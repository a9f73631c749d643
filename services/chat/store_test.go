package chat_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/chat"
)

// Tests of Store contracts the service's tests reach only in part, run on
// every backend.

// One batch holds new sends, a send stored before, and a sender who may
// not write: the new ones are stored at consecutive seqs, the others are
// reported not stored, and none fails the batch.
func TestAppendMessagesKeepsEachSendsOutcome(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		ctx := context.Background()
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		_, strangerID := f.user("stranger")
		conv := uuid.MustParse(f.group(alice, bobID)) // seq 1
		a, b, stranger := uuid.MustParse(aliceID), uuid.MustParse(bobID), uuid.MustParse(strangerID)
		msg := func(actor uuid.UUID, clientID string) chat.NewMessage {
			return chat.NewMessage{Actor: actor, Body: []byte(clientID), MessageID: uuid.New(), ClientMsgID: clientID}
		}
		before := msg(a, "before")
		first, err := f.store.AppendMessages(ctx, conv, []chat.NewMessage{before})
		if err != nil || len(first) != 1 || !first[0].Stored || first[0].Seq != 2 {
			t.Fatalf("first batch: %+v, %v", first, err)
		}

		batch := []chat.NewMessage{msg(a, "one"), msg(a, "before"), msg(stranger, "in"), msg(b, "before"), msg(a, "two")}
		got, err := f.store.AppendMessages(ctx, conv, batch)
		if err != nil {
			t.Fatal(err)
		}
		// Bob's "before" is his own client_msg_id, not alice's.
		want := []struct {
			stored bool
			seq    int64
		}{{true, 3}, {false, 0}, {false, 0}, {true, 4}, {true, 5}}
		if len(got) != len(want) {
			t.Fatalf("%d outcomes for %d sends", len(got), len(batch))
		}
		for i, w := range want {
			if got[i].Stored != w.stored || got[i].Seq != w.seq || got[i].Stored && !got[i].At.Equal(got[0].At) {
				t.Errorf("send %d (%s): %+v, want stored %v at seq %d with the batch's time", i, batch[i].ClientMsgID, got[i], w.stored, w.seq)
			}
		}
		orig, err := f.store.MessageByClientID(ctx, conv, a, "before")
		if err != nil || orig.Seq != 2 || orig.MessageID == nil || *orig.MessageID != before.MessageID {
			t.Fatalf("the original of the repeat: %+v, %v", orig, err)
		}
		if c, err := f.store.Conversation(ctx, a, conv); err != nil || c.LastSeq != 5 || c.Last == nil || c.Last.Seq != 5 {
			t.Fatalf("conversation after the batch: %+v, %v; want last seq 5", c, err)
		}

		none, err := f.store.AppendMessages(ctx, uuid.New(), []chat.NewMessage{msg(a, "nowhere")})
		if err != nil || len(none) != 1 || none[0].Stored {
			t.Fatalf("a batch to no conversation: %+v, %v; want nothing stored and no error", none, err)
		}
	})
}

// Commits land between the pages of a sync across many conversations;
// that sync and the next one deliver every event exactly once.
func TestSyncPagesAcrossManyConversationsWhileOthersCommit(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		const n = 12
		convs := make([]string, n)
		for i := range convs {
			convs[i] = f.group(bob, f.userID(alice))
			f.send(bob, convs[i], "hello")
		}
		other := f.group(bob, bobID) // not alice's
		want := map[string]uint64{}  // conversation -> last seq alice sees
		for _, c := range convs {
			want[c] = 2
		}

		seen := map[string]map[uint64]int{}
		record := func(res *chatv1.SyncResponse) {
			for _, ev := range res.GetEvents() {
				c := ev.GetConversationId()
				if seen[c] == nil {
					seen[c] = map[uint64]int{}
				}
				if seen[c][ev.GetSeq()]++; seen[c][ev.GetSeq()] > 1 {
					t.Fatalf("%s seq %d sent again", c, ev.GetSeq())
				}
			}
		}
		cursor, pages := "", 0
		for round := range 2 {
			for {
				res, err := f.svc.Sync(alice, &chatv1.SyncRequest{Cursor: cursor, PageSize: 5})
				if err != nil {
					t.Fatal(err)
				}
				record(res)
				cursor, pages = res.GetNextCursor(), pages+1
				// Between pages: one conversation behind the position, one
				// ahead, and one alice is not in.
				c := convs[(pages*5)%n]
				f.send(bob, c, fmt.Sprint("round ", round, " page ", pages))
				want[c]++
				f.send(bob, other, "not for alice")
				if !res.GetHasMore() {
					break
				}
			}
		}
		// What the last page's sends committed comes in one more sync.
		res, err := f.svc.Sync(alice, &chatv1.SyncRequest{Cursor: cursor, PageSize: 1000})
		if err != nil || res.GetHasMore() {
			t.Fatalf("last sync: %v, more %v", err, res.GetHasMore())
		}
		record(res)
		if len(seen) != n {
			t.Fatalf("events of %d conversations, want %d", len(seen), n)
		}
		for _, c := range convs {
			if uint64(len(seen[c])) != want[c] {
				t.Errorf("%s: %d distinct events, want seqs 1..%d", c, len(seen[c]), want[c])
			}
			for s := uint64(1); s <= want[c]; s++ {
				if seen[c][s] != 1 {
					t.Errorf("%s: seq %d never sent", c, s)
				}
			}
		}
	})
}
