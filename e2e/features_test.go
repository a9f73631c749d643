package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/client"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	contactv1 "github.com/wagglechat/waggle/gen/go/waggle/contact/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/notify"
)

// webhook receives offline pushes and keeps those whose signature verifies.
type webhook struct {
	*httptest.Server
	got chan notify.Notification
}

func newWebhook(t *testing.T, secret string) *webhook {
	w := &webhook{got: make(chan notify.Notification, 100)}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.VerifySignature(secret, r.Header.Get(notify.SignatureHeader), body, time.Now(), 0); err != nil {
			t.Errorf("webhook: %v", err)
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		var n notify.Notification
		if err := json.Unmarshal(body, &n); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		w.got <- n
	}))
	t.Cleanup(w.Close)
	return w
}

// next returns the next notification for user, skipping others.
func (w *webhook) next(t *testing.T, user string) notify.Notification {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case n := <-w.got:
			if n.UserID == user {
				return n
			}
		case <-timeout:
			t.Fatalf("no push for %s", user)
		}
	}
}

func command(t *testing.T, d *device, f *edgev1.ClientFrame) *edgev1.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := d.client.Call(ctx, f)
	if err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	return res
}

// TestConversationFeatures drives every conversation feature through real
// clients over HTTP/2 against one `waggle serve`, on each deployment: two
// devices of one user, a second user, and a third who stays offline and
// catches up by sync.
func TestConversationFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	forEachDeployment(t, testConversationFeatures)
}

func testConversationFeatures(t *testing.T, c *cluster) {
	const secret = "webhook-secret-for-the-test"
	hook := newWebhook(t, secret)
	srv := c.start("serve", "serve", "--push-webhook-url", hook.URL, "--push-webhook-secret", secret, "--presence-grace", "500ms")
	ctx := context.Background()

	alice := register(t, srv.url(), "alice")
	alice2 := login(t, srv.url(), "alice")
	bob := register(t, srv.url(), "bob")
	carol := register(t, srv.url(), "carol") // offline until the last steps
	a1 := newDevice(t, "alice/1 connect", alice, connectEdge(srv.url()))
	a2 := newDevice(t, "alice/2 grpc-go", alice2, grpcEdge(t, srv.addr))
	b1 := newDevice(t, "bob connect", bob, connectEdge(srv.url()))

	dres, err := alice.convs.CreateDirectConversation(ctx, &chatv1.CreateDirectConversationRequest{PeerUserId: bob.id})
	if err != nil {
		t.Fatal(err)
	}
	direct := dres.GetConversation().GetConversationId()
	gres, err := alice.convs.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: "trio", MemberUserIds: []string{bob.id, carol.id}})
	if err != nil {
		t.Fatal(err)
	}
	group := gres.GetConversation().GetConversationId()

	t.Run("read markers reach the other party and the reader's other devices", func(t *testing.T) {
		for _, text := range []string{"one", "two", "three"} {
			b1.send(t, direct, text)
		}
		last := alice.lastSeq(t, direct)
		converge(t, direct, last, a1, a2, b1)
		list, err := alice.convs.ListConversations(ctx, &chatv1.ListConversationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if list.GetBadge() != 3 || list.GetConversations()[0].GetUnreadCount() != 3 {
			t.Fatalf("alice's list: badge %d, newest conversation unread %d; want 3 and 3", list.GetBadge(), list.GetConversations()[0].GetUnreadCount())
		}
		res := command(t, a1, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_MarkRead{MarkRead: &chatv1.MarkReadRequest{ConversationId: direct, Seq: last}}})
		if res.GetMarkRead().GetUnreadCount() != 0 || res.GetMarkRead().GetBadge() != 0 {
			t.Fatalf("mark read answered %v", res)
		}
		eventually(t, "alice's other device to apply her read marker", func() bool {
			evs := a2.userEventsOf()
			return len(evs) > 0 && evs[len(evs)-1].GetReadMarker().GetReadSeq() == last
		})
		eventually(t, "bob to see alice's read marker", func() bool {
			return slices.ContainsFunc(b1.pushed(), func(p *edgev1.Push) bool {
				return len(p.GetReadMarkers()) == 1 && p.GetReadMarkers()[0].GetUserId() == alice.id && p.GetReadMarkers()[0].GetReadSeq() == last
			})
		})
		eventually(t, "alice's other device to get the new unread count", func() bool {
			return slices.ContainsFunc(a2.pushed(), func(p *edgev1.Push) bool {
				return len(p.GetUnread()) == 1 && p.GetUnread()[0].GetConversationId() == direct && p.GetUnread()[0].GetBadge() == 0
			})
		})
	})

	var question *chatv1.Message
	t.Run("receipts and delivery state in a group", func(t *testing.T) {
		question = a1.send(t, group, "who read this?")
		converge(t, group, alice.lastSeq(t, group), a1, a2, b1)
		if _, err := bob.msgs.MarkRead(ctx, &chatv1.MarkReadRequest{ConversationId: group, Seq: question.GetSeq()}); err != nil {
			t.Fatal(err)
		}
		rec, err := alice.msgs.ListReadReceipts(ctx, &chatv1.ListReadReceiptsRequest{ConversationId: group, Seq: question.GetSeq()})
		if err != nil {
			t.Fatal(err)
		}
		if rec.GetReadCount() != 1 || rec.GetUnreadCount() != 1 || rec.GetMarkers()[0].GetUserId() != bob.id {
			t.Fatalf("receipts %v, want bob read and carol not", rec)
		}
		eventually(t, "bob's device's delivery to be reported", func() bool {
			st, err := alice.msgs.GetDeliveryState(ctx, &chatv1.GetDeliveryStateRequest{ConversationId: group, Seq: question.GetSeq()})
			return err == nil && st.GetDeliveredUserCount() == 1 && st.GetDeliveries()[0].GetUserId() == bob.id && st.GetMemberCount() == 2
		})
	})

	t.Run("carol, offline, gets a signed push with her badge; muted, none", func(t *testing.T) {
		n := hook.next(t, carol.id)
		if n.ConversationID != group || n.Badge != 1 || n.Preview != "who read this?" || n.ConversationTitle != "trio" {
			t.Fatalf("push %+v, want the question with badge 1", n)
		}
		if _, err := carol.convs.SetConversationMuted(ctx, &chatv1.SetConversationMutedRequest{ConversationId: group, Muted: true}); err != nil {
			t.Fatal(err)
		}
		a1.send(t, group, "muted now")
		b1.send(t, direct, "a push for nobody: alice is online")
		time.Sleep(time.Second) // a push, if one were sent, would have arrived
		select {
		case n := <-hook.got:
			t.Fatalf("unexpected push %+v", n)
		default:
		}
	})

	t.Run("reactions, edits and recalls reach every device and history", func(t *testing.T) {
		if _, err := bob.msgs.AddReaction(ctx, &chatv1.AddReactionRequest{ConversationId: group, MessageId: question.GetMessageId(), Emoji: "👀"}); err != nil {
			t.Fatal(err)
		}
		command(t, a1, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_EditMessage{EditMessage: &chatv1.EditMessageRequest{
			ConversationId: group, MessageId: question.GetMessageId(), Content: textContent("who has read this?")}}})
		converge(t, group, alice.lastSeq(t, group), a1, a2, b1)
		if ev := b1.last(group); ev.GetMessageEdited().GetContent().GetText().GetBody() != "who has read this?" {
			t.Fatalf("bob's newest event %v, want the edit", ev)
		}
		hist, err := bob.msgs.ListMessages(ctx, &chatv1.ListMessagesRequest{ConversationId: group, StartSeq: question.GetSeq(), PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		m := hist.GetMessages()[0]
		if m.GetContent().GetText().GetBody() != "who has read this?" || m.GetEditTime() == nil || len(m.GetReactions()) != 1 {
			t.Fatalf("bob's history %v, want the edited text and one reaction", m)
		}
		_, err = bob.msgs.RecallMessage(ctx, &chatv1.RecallMessageRequest{ConversationId: group, MessageId: question.GetMessageId()})
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("bob recalling alice's message: %v, want permission_denied", err)
		}
		if _, err := alice2.msgs.RecallMessage(ctx, &chatv1.RecallMessageRequest{ConversationId: group, MessageId: question.GetMessageId()}); err != nil {
			t.Fatal(err)
		}
		converge(t, group, alice.lastSeq(t, group), a1, a2, b1)
		if b1.last(group).GetMessageRecalled().GetMessageId() != question.GetMessageId() {
			t.Fatalf("bob's newest event %v, want the recall", b1.last(group))
		}
	})

	t.Run("delete for me hides on all of my devices and nobody else's", func(t *testing.T) {
		oops := b1.send(t, group, "oops")
		converge(t, group, alice.lastSeq(t, group), a1, a2, b1)
		command(t, a1, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_DeleteMessagesForMe{DeleteMessagesForMe: &chatv1.DeleteMessagesForMeRequest{
			ConversationId: group, MessageIds: []string{oops.GetMessageId()}}}})
		eventually(t, "alice's other device to hide it", func() bool {
			return slices.ContainsFunc(a2.userEventsOf(), func(ev *chatv1.UserEvent) bool {
				return slices.Contains(ev.GetMessagesDeleted().GetMessageIds(), oops.GetMessageId())
			})
		})
		has := func(u *user) bool {
			hist, err := u.msgs.ListMessages(ctx, &chatv1.ListMessagesRequest{ConversationId: group})
			if err != nil {
				t.Fatal(err)
			}
			return slices.ContainsFunc(hist.GetMessages(), func(m *chatv1.Message) bool { return m.GetMessageId() == oops.GetMessageId() })
		}
		if has(alice) || !has(bob) {
			t.Fatal("delete for me must hide the message from alice only")
		}
	})

	t.Run("typing reaches online members and is never stored", func(t *testing.T) {
		before := alice.lastSeq(t, group)
		command(t, a1, &edgev1.ClientFrame{Kind: &edgev1.ClientFrame_SendTyping{SendTyping: &chatv1.SendTypingRequest{ConversationId: group, Typing: true}}})
		eventually(t, "bob to see alice typing", func() bool {
			return slices.ContainsFunc(b1.pushed(), func(p *edgev1.Push) bool {
				return len(p.GetTyping()) == 1 && p.GetTyping()[0].GetUserId() == alice.id && p.GetTyping()[0].GetTyping()
			})
		})
		if alice.lastSeq(t, group) != before {
			t.Fatal("typing was stored in the sequence")
		}
		_, err := alice.msgs.SendTyping(ctx, &chatv1.SendTypingRequest{ConversationId: group, Typing: true})
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("a second typing signal at once: %v, want resource_exhausted", err)
		}
	})

	t.Run("presence subscriptions: offline after the grace, quick reconnects unseen", func(t *testing.T) {
		dave := register(t, srv.url(), "dave")
		d1 := newDevice(t, "dave/1", dave, connectEdge(srv.url()))
		// Presence is for contacts and conversation partners.
		if _, err := bob.contacts.AddContact(ctx, &contactv1.AddContactRequest{UserId: dave.id}); err != nil {
			t.Fatal(err)
		}
		pres, err := b1.client.FollowPresence(ctx, []string{dave.id}, nil)
		if err != nil || len(pres) != 1 || pres[0].GetStatus() != presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE {
			t.Fatalf("snapshot %v, %v; want dave online", pres, err)
		}
		changes := func() []presencev1.PresenceStatus {
			var s []presencev1.PresenceStatus
			for _, p := range b1.pushed() {
				for _, u := range p.GetPresence() {
					if u.GetUserId() == dave.id {
						s = append(s, u.GetStatus())
					}
				}
			}
			return s
		}
		// Dave's own ONLINE, announced as he connected, may still be on its
		// way; let it land before counting.
		time.Sleep(300 * time.Millisecond)
		settled := len(changes())
		// A drop and a reconnect within the 500 ms grace.
		d1.stop()
		d2 := newDevice(t, "dave/2", dave, connectEdge(srv.url()))
		time.Sleep(1500 * time.Millisecond)
		if got := changes()[settled:]; len(got) != 0 {
			t.Fatalf("a quick reconnect showed bob %v", got)
		}
		d2.stop()
		eventually(t, "bob to see dave offline", func() bool {
			got := changes()[settled:]
			return len(got) == 1 && got[0] == presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE
		})
		p, err := bob.presence.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{dave.id}})
		if err != nil || p.GetPresences()[0].GetLastSeenTime() == nil {
			t.Fatalf("dave's presence %v, %v; want offline with a last-seen time", p, err)
		}
	})

	t.Run("group administration is enforced over the wire", func(t *testing.T) {
		_, err := bob.convs.RemoveMember(ctx, &chatv1.RemoveMemberRequest{ConversationId: group, UserId: carol.id})
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("a member removing another: %v, want permission_denied", err)
		}
		if _, err := alice.convs.UpdateConversation(ctx, &chatv1.UpdateConversationRequest{ConversationId: group, Title: "trio!"}); err != nil {
			t.Fatal(err)
		}
		converge(t, group, alice.lastSeq(t, group), a1, a2, b1)
		if b1.last(group).GetConversationRenamed().GetTitle() != "trio!" {
			t.Fatalf("bob's newest event %v, want the rename", b1.last(group))
		}
	})

	t.Run("contacts sync to my devices; a blocked user can neither write nor see me", func(t *testing.T) {
		mallory := register(t, srv.url(), "mallory")
		if _, err := alice.contacts.AddContact(ctx, &contactv1.AddContactRequest{UserId: bob.id, Alias: "Bobby"}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.contacts.BlockUser(ctx, &contactv1.BlockUserRequest{UserId: mallory.id}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "alice's other device to apply both contact changes", func() bool {
			var alias, blocked bool
			for _, ev := range a2.userEventsOf() {
				cc := ev.GetContactChanged()
				alias = alias || (cc.GetUserId() == bob.id && cc.GetAlias() == "Bobby")
				blocked = blocked || (cc.GetUserId() == mallory.id && cc.GetBlocked())
			}
			return alias && blocked
		})
		_, err := mallory.convs.CreateDirectConversation(ctx, &chatv1.CreateDirectConversationRequest{PeerUserId: alice.id})
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("blocked mallory starting a 1:1 with alice: %v, want permission_denied", err)
		}
		// mallory shares nothing with anyone, and alice blocked him: he
		// sees nobody's presence. bob, alice's partner, sees hers.
		p, err := mallory.presence.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{alice.id, bob.id}})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range p.GetPresences() {
			if !u.GetHidden() || u.GetStatus() != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE || u.GetLastSeenTime() != nil {
				t.Fatalf("mallory sees %v; want everyone hidden, offline, never seen", u)
			}
		}
		p, err = bob.presence.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{alice.id}})
		if err != nil || p.GetPresences()[0].GetHidden() || p.GetPresences()[0].GetStatus() != presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE {
			t.Fatalf("bob sees alice as %v, %v; want online", p.GetPresences(), err)
		}
	})

	t.Run("carol, offline through all of it, catches up exactly by sync", func(t *testing.T) {
		// Resume from a refresh token, as an app does at start.
		accounts := accountv1connect.NewAccountServiceClient(h2c(), srv.url())
		tokens, err := client.Login(ctx, accounts, "carol", password, "carol-2")
		if err != nil {
			t.Fatal(err)
		}
		resumed := client.Resume(accounts, tokens.RefreshToken())
		tok, err := resumed.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c1 := newDevice(t, "carol (was offline)", asUser(srv.url(), "carol", carol.id, tokens.DeviceID(), tok), connectEdge(srv.url()))
		converge(t, group, alice.lastSeq(t, group), c1)
		// The SDK's API carries the resumed token on every call.
		api := client.NewAPI(client.HTTP2Client(), srv.url(), resumed, connect.WithGRPC())
		hist, err := api.Messages.ListMessages(ctx, &chatv1.ListMessagesRequest{ConversationId: group})
		if err != nil || len(hist.GetMessages()) == 0 {
			t.Fatalf("carol's history through the SDK's API: %v, %v", hist, err)
		}
		evs := c1.userEventsOf()
		if len(evs) != 1 || !evs[0].GetConversationMuted().GetMuted() {
			t.Fatalf("carol's user events %v, want her mute", evs)
		}
		kinds := map[string]bool{}
		c1.mu.Lock()
		for _, ev := range c1.events[group] {
			switch {
			case ev.GetReactionAdded() != nil:
				kinds["reaction"] = true
			case ev.GetMessageEdited() != nil:
				kinds["edit"] = true
			case ev.GetMessageRecalled() != nil:
				kinds["recall"] = true
			case ev.GetConversationRenamed() != nil:
				kinds["rename"] = true
			case ev.GetMessage().GetRecallTime() != nil:
				kinds["tombstone"] = true
			}
		}
		c1.mu.Unlock()
		if len(kinds) != 5 {
			t.Fatalf("carol's sync brought %v, want reaction, edit, recall, rename and the tombstone", kinds)
		}
	})
}
