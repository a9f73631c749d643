package chat_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/chat"
)

func TestListRoutesNamesCurrentGroupsWithTheirPositions(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		_, carolID := f.user("carol")
		g1 := f.group(alice, bobID)
		f.send(alice, g1, "one") // g1 at seq 2
		g2 := f.group(alice)
		if _, err := f.svc.AddMembers(alice, &chatv1.AddMembersRequest{ConversationId: g2, UserIds: []string{bobID}}); err != nil {
			t.Fatal(err) // bob joins g2 at seq 2, so joined_seq 1
		}
		left := f.group(alice, bobID)
		if _, err := f.svc.RemoveMember(alice, &chatv1.RemoveMemberRequest{ConversationId: left, UserId: bobID}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: bobID}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.MarkRead(alice, &chatv1.MarkReadRequest{ConversationId: g1, Seq: 2}); err != nil {
			t.Fatal(err) // alice's user seq 1
		}
		res, err := f.svc.ListRoutes(context.Background(), &chatv1.ListRoutesRequest{UserIds: []string{aliceID, bobID, carolID}})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, u := range res.GetUsers() {
			s := fmt.Sprintf("user seq %d:", u.GetUserSeq())
			for _, g := range u.GetGroups() {
				name := map[string]string{g1: "g1", g2: "g2", left: "left"}[g.GetConversationId()]
				s += fmt.Sprintf(" %s(joined %d, last %d)", name, g.GetJoinedSeq(), g.GetLastSeq())
			}
			got[u.GetUserId()] = s
		}
		want := map[string][]string{
			// Groups may come in any order.
			aliceID: {"user seq 1: g1(joined 0, last 2) g2(joined 0, last 2) left(joined 0, last 2)", "user seq 1: g1(joined 0, last 2) left(joined 0, last 2) g2(joined 0, last 2)",
				"user seq 1: g2(joined 0, last 2) g1(joined 0, last 2) left(joined 0, last 2)", "user seq 1: g2(joined 0, last 2) left(joined 0, last 2) g1(joined 0, last 2)",
				"user seq 1: left(joined 0, last 2) g1(joined 0, last 2) g2(joined 0, last 2)", "user seq 1: left(joined 0, last 2) g2(joined 0, last 2) g1(joined 0, last 2)"},
			bobID:   {"user seq 0: g1(joined 0, last 2) g2(joined 1, last 2)", "user seq 0: g2(joined 1, last 2) g1(joined 0, last 2)"},
			carolID: {"user seq 0:"},
		}
		for user, options := range want {
			ok := false
			for _, o := range options {
				ok = ok || got[user] == o
			}
			if !ok {
				t.Errorf("routes of %s: %q, want %q (no direct conversations, no group left)", user, got[user], options[0])
			}
		}
		_, err = f.svc.ListRoutes(context.Background(), &chatv1.ListRoutesRequest{UserIds: []string{"nope"}})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}

func TestReadEventsReadsRangesInOrderWithinABudget(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		conv := f.group(alice) // seq 1
		for i := range 9 {
			f.send(alice, conv, fmt.Sprint("m", i)) // 2..10
		}
		for seq := range uint64(3) {
			if _, err := f.svc.MarkRead(alice, &chatv1.MarkReadRequest{ConversationId: conv, Seq: seq + 2}); err != nil {
				t.Fatal(err) // user events 1..3
			}
		}
		seqs := func(evs []*chatv1.Event) []uint64 {
			var out []uint64
			for _, e := range evs {
				out = append(out, e.GetSeq())
			}
			return out
		}
		res, err := f.svc.ReadEvents(context.Background(), &chatv1.ReadEventsRequest{
			Conversations: []*chatv1.StreamRange{{Id: conv, FromSeq: 4, ToSeq: 6}, {Id: conv, FromSeq: 9}},
			Users:         []*chatv1.StreamRange{{Id: aliceID, FromSeq: 2}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if c := res.GetConversations(); len(c) != 2 || fmt.Sprint(seqs(c[0].GetEvents())) != "[4 5 6]" || c[0].GetMore() ||
			fmt.Sprint(seqs(c[1].GetEvents())) != "[9 10]" || c[1].GetMore() {
			t.Fatalf("conversation ranges %v, want [4 5 6] and [9 10]", c)
		}
		if m := res.GetConversations()[0].GetEvents()[0].GetMessage(); m.GetContent().GetText().GetBody() != "m2" {
			t.Fatalf("seq 4 read back as %v, want the message m2", m)
		}
		if u := res.GetUsers(); len(u) != 1 || len(u[0].GetEvents()) != 2 || u[0].GetEvents()[0].GetSeq() != 2 || u[0].GetEvents()[0].GetReadMarker().GetReadSeq() != 3 {
			t.Fatalf("user range %v, want user events 2 and 3", u)
		}

		// 1000 ranges share the budget: every range answers a gap-free prefix
		// of itself, and those cut short say more.
		var many []*chatv1.StreamRange
		for range 1000 {
			many = append(many, &chatv1.StreamRange{Id: conv, FromSeq: 1})
		}
		res, err = f.svc.ReadEvents(context.Background(), &chatv1.ReadEventsRequest{Conversations: many})
		if err != nil {
			t.Fatal(err)
		}
		complete := 0
		for i, c := range res.GetConversations() {
			got := seqs(c.GetEvents())
			for j, seq := range got {
				if seq != uint64(j+1) {
					t.Fatalf("range %d read %v, want a prefix of 1..10", i, got)
				}
			}
			switch {
			case len(got) == 10 && !c.GetMore():
				complete++
			case len(got) < 10 && c.GetMore():
			default:
				t.Fatalf("range %d: %d events, more %v", i, len(got), c.GetMore())
			}
		}
		if complete == 0 || complete == 1000 {
			t.Fatalf("%d of 1000 ranges complete, want the 2 MiB budget to cut some but not all", complete)
		}
		_, err = f.svc.ReadEvents(context.Background(), &chatv1.ReadEventsRequest{Conversations: append(many, many[0])})
		wantCode(t, err, connect.CodeInvalidArgument)
		_, err = f.svc.ReadEvents(context.Background(), &chatv1.ReadEventsRequest{Conversations: []*chatv1.StreamRange{{Id: conv, FromSeq: 5, ToSeq: 4}}})
		wantCode(t, err, connect.CodeInvalidArgument)
		_, err = f.svc.ReadEvents(context.Background(), &chatv1.ReadEventsRequest{Conversations: []*chatv1.StreamRange{{Id: conv}}})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}

func TestReadEventsSaysMorePastTheEventLimit(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		f.svc = chat.New(chat.Config{SendRate: 1e6, SendBurst: 1e6}, f.store, nil, testLog())
		alice, _ := f.user("alice")
		conv := f.group(alice)
		for i := range chat.MaxEventsPerRead + 5 {
			f.send(alice, conv, fmt.Sprint("m", i))
		}
		res, err := f.svc.ReadEvents(context.Background(), &chatv1.ReadEventsRequest{Conversations: []*chatv1.StreamRange{{Id: conv, FromSeq: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		c := res.GetConversations()[0]
		if len(c.GetEvents()) != chat.MaxEventsPerRead || !c.GetMore() || c.GetEvents()[chat.MaxEventsPerRead-1].GetSeq() != chat.MaxEventsPerRead {
			t.Fatalf("%d events (more %v), want the first %d and more", len(c.GetEvents()), c.GetMore(), chat.MaxEventsPerRead)
		}
	})
}

func TestListDirectChangesSince(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		_, carolID := f.user("carol")
		quiet, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: carolID})
		if err != nil {
			t.Fatal(err)
		}
		// The database clock decides; step past its now for a clean boundary.
		since, err := f.db.now(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		since = since.Add(10 * time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		busy, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: bobID})
		if err != nil {
			t.Fatal(err)
		}
		f.send(alice, busy.GetConversation().GetConversationId(), "hi")
		f.group(alice, bobID) // groups are not listed
		res, err := f.svc.ListDirectChanges(context.Background(), &chatv1.ListDirectChangesRequest{
			UserIds: []string{aliceID, bobID, carolID}, Since: timestamppb.New(since)})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for _, c := range res.GetChanges() {
			if c.GetConversationId() != busy.GetConversation().GetConversationId() {
				t.Errorf("listed %s, which did not change", c.GetConversationId())
			}
			got[c.GetUserId()] = c.GetLastSeq()
		}
		if len(got) != 2 || got[aliceID] != 2 || got[bobID] != 2 {
			t.Fatalf("changes %v, want alice and bob in the busy conversation at seq 2", got)
		}
		_ = quiet
		_, err = f.svc.ListDirectChanges(context.Background(), &chatv1.ListDirectChangesRequest{UserIds: []string{aliceID}})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}
