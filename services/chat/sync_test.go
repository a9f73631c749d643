package chat_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/services/chat"
)

// syncAll pages through Sync from cursor and returns the events by
// conversation and the final cursor.
func (f *fixture) syncAll(ctx context.Context, cursor string, pageSize int32, known ...*chatv1.ConversationPosition) (map[string][]uint64, string, int) {
	f.t.Helper()
	got := map[string][]uint64{}
	pages := 0
	for {
		res, err := f.svc.Sync(ctx, &chatv1.SyncRequest{Cursor: cursor, PageSize: pageSize, KnownPositions: known})
		if err != nil {
			f.t.Fatal(err)
		}
		pages++
		for _, ev := range res.GetEvents() {
			got[ev.GetConversationId()] = append(got[ev.GetConversationId()], ev.GetSeq())
		}
		cursor = res.GetNextCursor()
		if !res.GetHasMore() {
			return got, cursor, pages
		}
	}
}

func seqs(from, to uint64) string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprint(i))
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestSyncReturnsWhatTheDeviceLacksAcrossConversations(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		bob, bobID := f.user("bob")
		_, carolID := f.user("carol")
		g1 := f.group(alice, bobID)
		g2 := f.group(bob, aliceID, carolID)
		other := f.group(bob, carolID) // alice is not a member
		for i := range 10 {
			f.send(alice, g1, fmt.Sprint("g1 ", i))
			f.send(bob, g2, fmt.Sprint("g2 ", i))
			f.send(bob, other, fmt.Sprint("other ", i))
		}

		// A fresh device: everything, paged, in order per conversation.
		got, cursor, pages := f.syncAll(alice, "", 7)
		if fmt.Sprint(got[g1]) != seqs(1, 11) || fmt.Sprint(got[g2]) != seqs(1, 11) || len(got) != 2 {
			t.Fatalf("first sync: %v", got)
		}
		if pages < 3 {
			t.Fatalf("22 events in pages of 7 came in %d pages", pages)
		}

		// Nothing new: nothing returned.
		got, cursor, _ = f.syncAll(alice, cursor, 100)
		if len(got) != 0 {
			t.Fatalf("sync with nothing new returned %v", got)
		}

		// New events in one conversation only.
		f.send(bob, g2, "new 1")
		f.send(bob, g2, "new 2")
		f.send(bob, other, "not for alice")
		got, cursor, _ = f.syncAll(alice, cursor, 100)
		if fmt.Sprint(got[g2]) != seqs(12, 13) || len(got) != 1 {
			t.Fatalf("incremental sync: %v", got)
		}

		// Positions the device got live are not sent again.
		f.send(bob, g2, "pushed 1") // 14
		f.send(bob, g2, "pushed 2") // 15
		f.send(alice, g1, "own")    // 12
		got, _, _ = f.syncAll(alice, cursor, 100, &chatv1.ConversationPosition{ConversationId: g2, Seq: 14})
		if fmt.Sprint(got[g2]) != "[15]" || fmt.Sprint(got[g1]) != "[12]" {
			t.Fatalf("sync with known positions: %v", got)
		}

		_, err := f.svc.Sync(alice, &chatv1.SyncRequest{Cursor: "not a cursor"})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}

// A transaction that took its xid before a sync's snapshot but commits after
// it must still reach the device on the next sync.
func TestSyncCatchesEventsCommittedDuringAnEarlierSync(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		conv := f.group(alice)
		ctx := context.Background()

		commit := f.openTx(func(tx chat.Tx) error {
			_, err := chat.AppendEvent(ctx, tx, uuid.MustParse(conv), uuid.MustParse(aliceID), "", &chatv1.Event{
				Kind: &chatv1.Event_ConversationRenamed{ConversationRenamed: &chatv1.ConversationRenamed{Title: "slow"}}}, true, nil)
			return err
		})

		got, cursor, _ := f.syncAll(alice, "", 100) // sees only seq 1
		if fmt.Sprint(got[conv]) != "[1]" {
			t.Fatalf("first sync: %v", got)
		}
		commit()
		got, _, _ = f.syncAll(alice, cursor, 100)
		if fmt.Sprint(got[conv]) != "[2]" {
			t.Fatalf("sync after the slow commit: %v, want [2]", got)
		}
	})
}

func TestSyncFollowsMembership(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, _ := f.user("alice")
		carol, carolID := f.user("carol")
		conv := f.group(alice)
		f.send(alice, conv, "before carol") // 2
		_, cursor, _ := f.syncAll(carol, "", 100)

		f.svc.AddMembers(alice, &chatv1.AddMembersRequest{ConversationId: conv, UserIds: []string{carolID}}) // 3
		f.send(alice, conv, "welcome")                                                                       // 4
		got, cursor, _ := f.syncAll(carol, cursor, 100)
		if fmt.Sprint(got[conv]) != "[3 4]" {
			t.Fatalf("after join: %v, want [3 4]", got)
		}
		f.svc.RemoveMember(alice, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: carolID}) // 5
		f.send(alice, conv, "after carol")                                                            // 6
		got, _, _ = f.syncAll(carol, cursor, 100)
		if fmt.Sprint(got[conv]) != "[5]" {
			t.Fatalf("after removal: %v, want only the removal [5]", got)
		}
	})
}

func TestSendWritesTheSameRowsWhateverTheGroupSize(t *testing.T) {
	f := newFixture(t)
	alice, _ := f.user("alice")
	_, bobID := f.user("bob")
	direct, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: bobID})
	if err != nil {
		t.Fatal(err)
	}
	members := make([]string, 999)
	for i := range members {
		_, members[i] = f.user(fmt.Sprint("m", i))
	}
	big := f.group(alice, members...)
	if n := f.memberCount(big); n != 1000 {
		t.Fatalf("group has %d members, want 1000", n)
	}

	written := pgtest.CountWrites(t, f.postgres())
	count := func(conv string) int64 {
		written()
		f.send(alice, conv, "hello")
		return written()
	}
	one, thousand := count(direct.GetConversation().GetConversationId()), count(big)
	t.Logf("rows written per send: 1:1 %d, 1000-member group %d", one, thousand)
	if one != thousand || one == 0 {
		t.Fatalf("a send wrote %d rows in a 1:1 and %d in a 1000-member group", one, thousand)
	}
}

func (f *fixture) memberCount(conv string) int {
	var n int
	if err := f.db.queryRow(context.Background(), `SELECT count(*) FROM members WHERE conversation_id = $1 AND left_seq IS NULL`, conv).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// A transaction left open elsewhere holds the watermark back for as long
// as it runs; syncs must still return each event once, across pages too.
func TestSyncSendsEachEventOnceWhileTheWatermarkIsHeldBack(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		bob, _ := f.user("bob")
		convs := []string{f.group(alice), f.group(alice), f.group(alice)}
		ctx := context.Background()
		other := f.group(bob)
		// With one writer nothing commits while a transaction is open, so
		// nothing can hold the watermark back: only the paging is tested.
		if !backendOf(t).oneWriter {
			f.openTx(func(tx chat.Tx) error {
				_, err := chat.AppendEvent(ctx, tx, uuid.MustParse(other), uuid.MustParse(f.userID(bob)), "", &chatv1.Event{
					Kind: &chatv1.Event_ConversationRenamed{ConversationRenamed: &chatv1.ConversationRenamed{Title: "open"}}}, true, nil)
				return err
			})
		}

		seen := map[string]map[uint64]int{}
		cursor := ""
		for round := range 4 {
			for _, c := range convs {
				f.send(alice, c, fmt.Sprint("round ", round))
			}
			var got map[string][]uint64
			got, cursor, _ = f.syncAll(alice, cursor, 2) // small pages: positions must survive paging
			for c, seqs := range got {
				if seen[c] == nil {
					seen[c] = map[uint64]int{}
				}
				for _, s := range seqs {
					seen[c][s]++
					if seen[c][s] > 1 {
						t.Fatalf("round %d: %s seq %d sent again", round, c, s)
					}
				}
			}
		}
		for _, c := range convs {
			if len(seen[c]) != 5 {
				t.Fatalf("%s: got %d distinct events, want 5", c, len(seen[c]))
			}
		}
		_ = aliceID
	})
}

func (f *fixture) userID(ctx context.Context) string {
	id, _ := auth.FromContext(ctx)
	return id.UserID
}
