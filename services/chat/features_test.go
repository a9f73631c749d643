package chat_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/client"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/chat"
)

// recorder is a Notifier that keeps what it was asked to deliver.
type recorder struct {
	mu         sync.Mutex
	events     []*chatv1.Event
	userEvents map[string][]*chatv1.UserEvent
	ephemeral  []chat.Ephemeral
}

func (r *recorder) Notify(_ context.Context, c chat.Committed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, c.Event)
}

func (r *recorder) NotifyUser(_ context.Context, user string, ev *chatv1.UserEvent, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.userEvents == nil {
		r.userEvents = map[string][]*chatv1.UserEvent{}
	}
	r.userEvents[user] = append(r.userEvents[user], ev)
}

func (r *recorder) NotifyEphemeral(_ context.Context, e chat.Ephemeral) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ephemeral = append(r.ephemeral, e)
}

func (r *recorder) take() ([]*chatv1.Event, map[string][]*chatv1.UserEvent, []chat.Ephemeral) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, u, p := r.events, r.userEvents, r.ephemeral
	r.events, r.userEvents, r.ephemeral = nil, nil, nil
	return e, u, p
}

func newRecordingFixture(t *testing.T, cfg chat.Config) (*fixture, *recorder) {
	f := newFixture(t)
	rec := &recorder{}
	f.svc = chat.New(cfg, f.store, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return f, rec
}

func (f *fixture) conversation(ctx context.Context, conv string) *chatv1.Conversation {
	f.t.Helper()
	res, err := f.svc.GetConversation(ctx, &chatv1.GetConversationRequest{ConversationId: conv})
	if err != nil {
		f.t.Fatal(err)
	}
	return res.GetConversation()
}

func (f *fixture) badgeOf(ctx context.Context) uint64 {
	f.t.Helper()
	res, err := f.svc.GetBadge(ctx, &chatv1.GetBadgeRequest{})
	if err != nil {
		f.t.Fatal(err)
	}
	return res.GetBadge()
}

func TestMarkReadMovesForwardAndSyncsToOwnDevices(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f, rec := newRecordingFixture(t, chat.Config{ReceiptPushLimit: 3})
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		conv := f.group(alice, bobID) // seq 1
		for i := range 5 {
			f.send(alice, conv, fmt.Sprint("m", i)) // seqs 2..6
		}
		f.send(bob, conv, "bob's own") // 7: never unread for bob
		if got := f.conversation(bob, conv).GetUnreadCount(); got != 5 {
			t.Fatalf("bob's unread = %d, want 5", got)
		}
		rec.take()

		res, err := f.svc.MarkRead(bob, &chatv1.MarkReadRequest{ConversationId: conv, Seq: 4})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetMarker().GetReadSeq() != 4 || res.GetUnreadCount() != 2 || res.GetBadge() != 2 {
			t.Fatalf("after reading to 4: %v, want read 4, unread 2, badge 2", res)
		}
		_, users, pushes := rec.take()
		if evs := users[bobID]; len(evs) != 1 || evs[0].GetReadMarker().GetReadSeq() != 4 {
			t.Fatalf("bob's user events %v, want one read marker at 4", evs)
		}
		var toAlice, toBob bool
		for _, p := range pushes {
			switch p := p.(type) {
			case chat.ReadMarkerMoved:
				toAlice = toAlice || p.Marker.GetConversationId() == conv && p.Marker.GetUserId() == bobID
			case chat.UnreadChanged:
				toBob = p.User == bobID && p.Conversation == conv && p.Unread == 2
			}
		}
		if !toAlice || !toBob {
			t.Fatalf("pushes %v: want bob's marker to alice and bob's new unread to bob", pushes)
		}

		// Backwards is ignored; past the end is clamped.
		back, err := f.svc.MarkRead(bob, &chatv1.MarkReadRequest{ConversationId: conv, Seq: 2})
		if err != nil || back.GetMarker().GetReadSeq() != 4 {
			t.Fatalf("marking back to 2: %v, %v; want the marker to stay at 4", back, err)
		}
		if _, users, _ := rec.take(); len(users) != 0 {
			t.Fatalf("a marker that did not move produced user events %v", users)
		}
		end, err := f.svc.MarkRead(bob, &chatv1.MarkReadRequest{ConversationId: conv, Seq: 1000})
		if err != nil || end.GetMarker().GetReadSeq() != 7 || end.GetUnreadCount() != 0 {
			t.Fatalf("marking past the end: %v, %v; want read 7, unread 0", end, err)
		}

		// Bob's marker sync reaches his other devices through Sync.
		sync, err := f.svc.Sync(bob, &chatv1.SyncRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(sync.GetUserEvents()); n != 2 || sync.GetUserEvents()[1].GetReadMarker().GetReadSeq() != 7 {
			t.Fatalf("sync user events %v, want the two marker moves", sync.GetUserEvents())
		}

		// In a group above ReceiptPushLimit, markers are not pushed to members.
		_, c1 := f.user("c1")
		_, c2 := f.user("c2")
		big := f.group(alice, bobID, c1, c2)
		f.send(alice, big, "hi")
		rec.take()
		if _, err := f.svc.MarkRead(bob, &chatv1.MarkReadRequest{ConversationId: big, Seq: 2}); err != nil {
			t.Fatal(err)
		}
		_, _, pushes = rec.take()
		for _, p := range pushes {
			if _, ok := p.(chat.ReadMarkerMoved); ok {
				t.Fatalf("a 4-member group (limit 3) pushed read markers: %v", p)
			}
		}
	})
}

// Many members send and mark read at once; afterwards every unread count
// and badge equals what the messages and markers say, computed here from
// the history rather than by the service's own query.
func TestUnreadCountsStayExactUnderConcurrency(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		const n = 6
		ctxs := make([]context.Context, n)
		ids := make([]string, n)
		for i := range n {
			ctxs[i], ids[i] = f.user(fmt.Sprint("u", i))
		}
		convs := []string{f.group(ctxs[0], ids[1:]...), f.group(ctxs[1], ids[0], ids[2], ids[3])}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), 7))
				for j := range 30 {
					conv := convs[r.IntN(2)]
					if r.IntN(3) == 0 {
						if _, err := f.svc.MarkRead(ctxs[i], &chatv1.MarkReadRequest{ConversationId: conv, Seq: uint64(r.IntN(200))}); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
							t.Error(err)
						}
						continue
					}
					if _, err := f.svc.SendMessage(ctxs[i], textReq(conv, fmt.Sprint(i, "-", j), "x")); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		for i := range n {
			var badge uint64
			for _, conv := range convs {
				c, err := f.svc.GetConversation(ctxs[i], &chatv1.GetConversationRequest{ConversationId: conv})
				if connect.CodeOf(err) == connect.CodeNotFound {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				hist, err := f.svc.ListMessages(ctxs[i], &chatv1.ListMessagesRequest{ConversationId: conv, PageSize: 200})
				if err != nil {
					t.Fatal(err)
				}
				var want uint64
				for _, m := range hist.GetMessages() {
					if m.GetSeq() > c.GetConversation().GetSelf().GetReadSeq() && m.GetSenderUserId() != ids[i] {
						want++
					}
				}
				if got := c.GetConversation().GetUnreadCount(); got != want {
					t.Errorf("user %d in %s: unread %d, history says %d", i, conv, got, want)
				}
				badge += want
			}
			if got := f.badgeOf(ctxs[i]); got != badge {
				t.Errorf("user %d: badge %d, history says %d", i, got, badge)
			}
		}
	})
}

func TestReadReceiptsAndDeliveryState(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		bob, bobID := f.user("bob")
		_, carolID := f.user("carol")
		conv := f.group(alice, bobID, carolID)
		msg := f.send(alice, conv, "did you read this?")
		if _, err := f.svc.MarkRead(bob, &chatv1.MarkReadRequest{ConversationId: conv, Seq: msg.GetSeq()}); err != nil {
			t.Fatal(err)
		}
		read, err := f.svc.ListReadReceipts(alice, &chatv1.ListReadReceiptsRequest{ConversationId: conv, Seq: msg.GetSeq()})
		if err != nil {
			t.Fatal(err)
		}
		if read.GetReadCount() != 1 || read.GetUnreadCount() != 1 || len(read.GetMarkers()) != 1 || read.GetMarkers()[0].GetUserId() != bobID {
			t.Fatalf("readers %v, want only bob (1 read, 1 unread; the sender left out)", read)
		}
		unread, err := f.svc.ListReadReceipts(alice, &chatv1.ListReadReceiptsRequest{ConversationId: conv, Seq: msg.GetSeq(), Filter: chatv1.ReadFilter_READ_FILTER_UNREAD})
		if err != nil || len(unread.GetMarkers()) != 1 || unread.GetMarkers()[0].GetUserId() != carolID {
			t.Fatalf("non-readers %v, %v; want carol", unread, err)
		}
		_, err = f.svc.ListReadReceipts(alice, &chatv1.ListReadReceiptsRequest{ConversationId: conv, Seq: 1})
		wantCode(t, err, connect.CodeNotFound) // seq 1 is not a message

		bobDevice, carolDevice := uuid.NewString(), uuid.NewString()
		if _, err := f.svc.ReportDeliveries(context.Background(), &chatv1.ReportDeliveriesRequest{Acks: []*chatv1.DeliveryAck{
			{UserId: bobID, DeviceId: bobDevice, ConversationId: conv, Seq: msg.GetSeq()},
			{UserId: carolID, DeviceId: carolDevice, ConversationId: conv, Seq: msg.GetSeq() - 1},
			{UserId: aliceID, DeviceId: uuid.NewString(), ConversationId: uuid.NewString(), Seq: 5}, // not a member: dropped
		}}); err != nil {
			t.Fatal(err)
		}
		state, err := f.svc.GetDeliveryState(alice, &chatv1.GetDeliveryStateRequest{ConversationId: conv, Seq: msg.GetSeq()})
		if err != nil {
			t.Fatal(err)
		}
		if state.GetDeliveredUserCount() != 1 || state.GetMemberCount() != 2 || state.GetDeliveries()[0].GetDeliveredDeviceIds()[0] != bobDevice {
			t.Fatalf("delivery state %v, want bob's device only, of 2 recipients", state)
		}
	})
}

func TestReactions(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f, rec := newRecordingFixture(t, chat.Config{})
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		msg := f.send(alice, conv, "react to me")
		rec.take()

		add := func(ctx context.Context, emoji string) *chatv1.AddReactionResponse {
			t.Helper()
			res, err := f.svc.AddReaction(ctx, &chatv1.AddReactionRequest{ConversationId: conv, MessageId: msg.GetMessageId(), Emoji: emoji})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		if add(bob, "👍").GetEvent().GetReactionAdded().GetEmoji() != "👍" {
			t.Fatal("first reaction produced no event")
		}
		if add(bob, "👍").GetEvent() != nil {
			t.Fatal("the same reaction twice produced a second event")
		}
		add(alice, "👍")
		add(alice, "🎉")
		if evs, _, _ := rec.take(); len(evs) != 3 {
			t.Fatalf("%d events pushed, want 3", len(evs))
		}
		hist, err := f.svc.ListMessages(bob, &chatv1.ListMessagesRequest{ConversationId: conv})
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprint(hist.GetMessages()[0].GetReactions())
		if want := fmt.Sprint([]*chatv1.ReactionSummary{{Emoji: "👍", Count: 2, ReactedByMe: true}, {Emoji: "🎉", Count: 1}}); got != want {
			t.Fatalf("reactions in bob's history %s, want %s", got, want)
		}
		who, err := f.svc.ListReactions(alice, &chatv1.ListReactionsRequest{ConversationId: conv, MessageId: msg.GetMessageId(), Emoji: "👍"})
		if err != nil || len(who.GetUserIds()) != 2 {
			t.Fatalf("who reacted 👍: %v, %v", who, err)
		}
		rm, err := f.svc.RemoveReaction(bob, &chatv1.RemoveReactionRequest{ConversationId: conv, MessageId: msg.GetMessageId(), Emoji: "👍"})
		if err != nil || rm.GetEvent().GetReactionRemoved() == nil {
			t.Fatalf("remove: %v, %v", rm, err)
		}
		for _, bad := range []string{"", "two words", string(make([]byte, 40))} {
			_, err := f.svc.AddReaction(bob, &chatv1.AddReactionRequest{ConversationId: conv, MessageId: msg.GetMessageId(), Emoji: bad})
			wantCode(t, err, connect.CodeInvalidArgument)
		}
		_, err = f.svc.AddReaction(bob, &chatv1.AddReactionRequest{ConversationId: conv, MessageId: uuid.NewString(), Emoji: "👍"})
		wantCode(t, err, connect.CodeNotFound)
	})
}

func TestEditDeleteForMeAndRecall(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		bob, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		msg := f.send(alice, conv, "first draft")
		lastSeq := func() uint64 { return f.conversation(alice, conv).GetLastSeq() }
		historyOf := func(ctx context.Context) []*chatv1.Message {
			t.Helper()
			res, err := f.svc.ListMessages(ctx, &chatv1.ListMessagesRequest{ConversationId: conv})
			if err != nil {
				t.Fatal(err)
			}
			return res.GetMessages()
		}

		// Edit: only the sender, only text.
		before := lastSeq()
		_, err := f.svc.EditMessage(bob, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: msg.GetMessageId(), Content: textContent("bob was here")})
		wantCode(t, err, connect.CodePermissionDenied)
		_, err = f.svc.EditMessage(alice, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: msg.GetMessageId(),
			Content: &chatv1.MessageContent{Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{Type: "x"}}}})
		wantCode(t, err, connect.CodeInvalidArgument)
		if lastSeq() != before || historyOf(bob)[0].GetContent().GetText().GetBody() != "first draft" {
			t.Fatal("a refused edit changed something")
		}
		edited, err := f.svc.EditMessage(alice, &chatv1.EditMessageRequest{ConversationId: conv, MessageId: msg.GetMessageId(), Content: textContent("final")})
		if err != nil || edited.GetEvent().GetMessageEdited() == nil {
			t.Fatalf("edit: %v, %v", edited, err)
		}
		if h := historyOf(bob)[0]; h.GetContent().GetText().GetBody() != "final" || h.GetEditTime() == nil {
			t.Fatalf("bob's history after the edit: %v", h)
		}

		// Delete for me: gone from bob's view only, and from his unread count.
		other := f.send(alice, conv, "noise")
		if n := f.conversation(bob, conv).GetUnreadCount(); n != 2 {
			t.Fatalf("bob's unread %d, want 2", n)
		}
		del, err := f.svc.DeleteMessagesForMe(bob, &chatv1.DeleteMessagesForMeRequest{ConversationId: conv, MessageIds: []string{other.GetMessageId()}})
		if err != nil || len(del.GetUserEvent().GetMessagesDeleted().GetMessageIds()) != 1 {
			t.Fatalf("delete for me: %v, %v", del, err)
		}
		if len(historyOf(bob)) != 1 || len(historyOf(alice)) != 2 || f.conversation(bob, conv).GetUnreadCount() != 1 {
			t.Fatal("delete for me did not hide the message for bob alone")
		}
		_, err = f.svc.DeleteMessagesForMe(bob, &chatv1.DeleteMessagesForMeRequest{ConversationId: conv, MessageIds: []string{uuid.NewString()}})
		wantCode(t, err, connect.CodeNotFound)

		// Recall: only the sender, only within the window.
		before = lastSeq()
		_, err = f.svc.RecallMessage(bob, &chatv1.RecallMessageRequest{ConversationId: conv, MessageId: msg.GetMessageId()})
		wantCode(t, err, connect.CodePermissionDenied)
		chat.SetNow(f.svc, func() time.Time { return time.Now().Add(25 * time.Hour) })
		_, err = f.svc.RecallMessage(alice, &chatv1.RecallMessageRequest{ConversationId: conv, MessageId: msg.GetMessageId()})
		wantCode(t, err, connect.CodeFailedPrecondition)
		if lastSeq() != before || historyOf(bob)[0].GetRecallTime() != nil {
			t.Fatal("a refused recall changed something")
		}
		chat.SetNow(f.svc, time.Now)
		rc, err := f.svc.RecallMessage(alice, &chatv1.RecallMessageRequest{ConversationId: conv, MessageId: msg.GetMessageId()})
		if err != nil || rc.GetEvent().GetMessageRecalled() == nil {
			t.Fatalf("recall: %v, %v", rc, err)
		}
		if h := historyOf(bob)[0]; h.GetRecallTime() == nil || h.GetContent() != nil {
			t.Fatalf("bob's history shows %v, want a tombstone", h)
		}
		var body []byte
		if err := f.db.queryRow(context.Background(), `SELECT body FROM events WHERE message_id = $1`, msg.GetMessageId()).Scan(&body); err != nil {
			t.Fatal(err)
		}
		if len(body) != 0 {
			t.Fatalf("recalled content still stored: %q", body)
		}
		// The edit event kept the edited text until the recall; not after it.
		sync, err := f.svc.Sync(bob, &chatv1.SyncRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range sync.GetEvents() {
			if e := ev.GetMessageEdited(); e != nil && e.GetContent() != nil {
				t.Fatalf("sync still returns the recalled message's edited text: %v", e)
			}
		}
		if n := f.conversation(bob, conv).GetUnreadCount(); n != 0 {
			t.Fatalf("bob's unread %d after the recall and the delete, want 0", n)
		}
		_ = aliceID
	})
}

func TestTypingIsEphemeralAndRateLimited(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f, rec := newRecordingFixture(t, chat.Config{TypingInterval: time.Hour})
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		rec.take()
		before := f.conversation(alice, conv).GetLastSeq()
		if _, err := f.svc.SendTyping(alice, &chatv1.SendTypingRequest{ConversationId: conv, Typing: true}); err != nil {
			t.Fatal(err)
		}
		_, err := f.svc.SendTyping(alice, &chatv1.SendTypingRequest{ConversationId: conv, Typing: true})
		wantRetryAfter(t, err, time.Hour)
		if _, err := f.svc.SendTyping(alice, &chatv1.SendTypingRequest{ConversationId: conv, Typing: false}); err != nil {
			t.Fatalf("stopping is never limited: %v", err)
		}
		evs, _, pushes := rec.take()
		if len(evs) != 0 || f.conversation(alice, conv).GetLastSeq() != before {
			t.Fatal("typing was stored")
		}
		if want := []chat.Ephemeral{chat.Typing{Conversation: conv, User: aliceID, Typing: true}, chat.Typing{Conversation: conv, User: aliceID}}; !slices.Equal(pushes, want) {
			t.Fatalf("typing pushes %v, want two to the conversation but alice", pushes)
		}
		stranger := auth.WithIdentity(context.Background(), auth.Identity{UserID: uuid.NewString()})
		_, err = f.svc.SendTyping(stranger, &chatv1.SendTypingRequest{ConversationId: conv, Typing: true})
		wantCode(t, err, connect.CodeNotFound)
	})
}

func textContent(s string) *chatv1.MessageContent {
	return &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: s}}}
}

func TestMuteIsSyncedAndLeavesTheBadge(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f, rec := newRecordingFixture(t, chat.Config{})
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		f.send(alice, conv, "loud")
		if f.badgeOf(bob) != 1 {
			t.Fatal("badge before muting is not 1")
		}
		rec.take()
		for range 2 {
			if _, err := f.svc.SetConversationMuted(bob, &chatv1.SetConversationMutedRequest{ConversationId: conv, Muted: true}); err != nil {
				t.Fatal(err)
			}
		}
		if _, users, _ := rec.take(); len(users[bobID]) != 1 || !users[bobID][0].GetConversationMuted().GetMuted() {
			t.Fatalf("user events %v, want one mute event (the second call changed nothing)", users)
		}
		c := f.conversation(bob, conv)
		if !c.GetSelf().GetMuted() || c.GetUnreadCount() != 1 || f.badgeOf(bob) != 0 {
			t.Fatalf("muted conversation: muted=%v unread=%d badge=%d; want muted, unread 1, badge 0", c.GetSelf().GetMuted(), c.GetUnreadCount(), f.badgeOf(bob))
		}
	})
}

func TestBlockedUserCannotWriteToTheBlocker(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		mallory, malloryID := f.user("mallory")
		res, err := f.svc.CreateDirectConversation(mallory, &chatv1.CreateDirectConversationRequest{PeerUserId: aliceID})
		if err != nil {
			t.Fatal(err)
		}
		conv := res.GetConversation().GetConversationId()
		f.send(mallory, conv, "before the block")
		if err := f.db.exec(context.Background(), `INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)`, aliceID, malloryID); err != nil {
			t.Fatal(err)
		}
		before := f.conversation(alice, conv).GetLastSeq()
		_, err = f.svc.SendMessage(mallory, textReq(conv, "blocked-1", "after the block"))
		wantCode(t, err, connect.CodePermissionDenied)
		_, err = f.svc.CreateDirectConversation(mallory, &chatv1.CreateDirectConversationRequest{PeerUserId: aliceID})
		wantCode(t, err, connect.CodePermissionDenied)
		if f.conversation(alice, conv).GetLastSeq() != before {
			t.Fatal("a refused send changed the conversation")
		}
		// The blocker may still write, and groups are not affected.
		f.send(alice, conv, "I blocked you")
		group := f.group(alice, malloryID)
		f.send(mallory, group, "in a group")
	})
}

// wantRetryAfter checks err is a limit's refusal whose RetryInfo, which the
// SDK waits for, is due within max.
func wantRetryAfter(t *testing.T, err error, max time.Duration) {
	t.Helper()
	wantCode(t, err, connect.CodeResourceExhausted)
	if d, ok := client.RetryDelay(err); !ok || d <= 0 || d > max {
		t.Fatalf("refusal %v: retry delay %v (present %v), want within %v", err, d, ok, max)
	}
}

func TestSendsAreRateLimitedPerUser(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		f.svc = chat.New(chat.Config{SendRate: 0.001, SendBurst: 3}, f.store, nil, testLog())
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		for i := range 3 {
			f.send(alice, conv, fmt.Sprint("burst ", i))
		}
		_, err := f.svc.SendMessage(alice, textReq(conv, "one-too-many", "flood"))
		wantRetryAfter(t, err, 1000*time.Second) // a token per 1,000 s
		f.send(bob, conv, "bob has his own budget")
	})
}

// A retry of a stored message is answered with the original even when the
// sender is over its rate: the SDK would otherwise report a stored message
// as failed.
func TestRateLimitedRetryOfAStoredMessageGetsTheOriginal(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		f.svc = chat.New(chat.Config{SendRate: 0.001, SendBurst: 1}, f.store, nil, testLog())
		alice, _ := f.user("alice")
		_, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		req := textReq(conv, "stored-once", "hello")
		first, err := f.svc.SendMessage(alice, req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := f.svc.SendMessage(alice, req)
		if err != nil {
			t.Fatalf("retry over the rate limit: %v, want the stored original", err)
		}
		if !again.GetDuplicate() || again.GetMessage().GetMessageId() != first.GetMessage().GetMessageId() {
			t.Fatalf("retry answered %v, want duplicate of %s", again, first.GetMessage().GetMessageId())
		}
		_, err = f.svc.SendMessage(alice, textReq(conv, "new", "flood"))
		wantCode(t, err, connect.CodeResourceExhausted)
	})
}

func TestFilterRelated(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		_, carolID := f.user("carol")
		_, daveID := f.user("dave")
		_, eveID := f.user("eve")
		f.group(alice, bobID)
		if err := f.db.exec(context.Background(), `INSERT INTO contacts (owner_id, user_id) VALUES ($1, $2)`, aliceID, carolID); err != nil {
			t.Fatal(err)
		}
		left := f.group(alice, eveID)
		if _, err := f.svc.RemoveMember(alice, &chatv1.RemoveMemberRequest{ConversationId: left, UserId: eveID}); err != nil {
			t.Fatal(err)
		}
		res, err := f.svc.FilterRelated(context.Background(), &chatv1.FilterRelatedRequest{ViewerUserId: aliceID,
			UserIds: []string{aliceID, bobID, carolID, daveID, eveID, "not-a-user"}})
		if err != nil {
			t.Fatal(err)
		}
		got := res.GetRelatedUserIds()
		slices.Sort(got)
		want := []string{aliceID, bobID, carolID}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("related %v, want alice herself, bob (a conversation partner) and carol (a contact); not dave, nor eve who was removed", got)
		}
	})
}
