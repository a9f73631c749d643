package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/google/uuid"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// userNames resolves user ids to usernames for text output, asking the
// server once per unknown id. Ids it cannot resolve show as their first
// block.
type userNames struct {
	a     *api
	known map[string]string
}

func newUserNames(a *api) *userNames {
	return &userNames{a: a, known: map[string]string{a.userID: a.username}}
}

// load resolves the ids not known yet; a failure only leaves them unresolved.
func (n *userNames) load(ctx context.Context, ids []string) {
	var missing []string
	seen := map[string]bool{}
	for _, id := range ids {
		if _, ok := n.known[id]; !ok && id != "" && !seen[id] {
			missing = append(missing, id)
			seen[id] = true
		}
	}
	for len(missing) > 0 {
		batch := missing[:min(len(missing), 500)]
		missing = missing[len(batch):]
		res, err := n.a.accounts.BatchGetUsers(ctx, &accountv1.BatchGetUsersRequest{UserIds: batch})
		if err != nil {
			return
		}
		for _, u := range res.GetUsers() {
			n.known[u.GetUserId()] = u.GetUsername()
		}
	}
}

func (n *userNames) name(id string) string {
	if u, ok := n.known[id]; ok {
		return u
	}
	return shortID(id)
}

// label is what to call a conversation on screen: a group's title, or
// the peer of a direct conversation.
func label(c conversationJSON, name names) string {
	if c.Type == "direct" {
		return "@" + name(c.PeerUserID)
	}
	if c.Title == "" {
		return "(untitled group)"
	}
	return c.Title
}

// listConversations pages through the caller's conversations, up to limit
// (0: all). It returns the badge and the sync cursor of the first page.
func listConversations(ctx context.Context, a *api, limit int) ([]conversationJSON, uint64, string, error) {
	var (
		out    []conversationJSON
		badge  uint64
		cursor string
		token  string
	)
	for first := true; ; first = false {
		size := 500
		if limit > 0 {
			size = min(size, limit-len(out))
		}
		res, err := a.convs.ListConversations(ctx, &chatv1.ListConversationsRequest{PageSize: int32(size), PageToken: token})
		if err != nil {
			return nil, 0, "", fmt.Errorf("list conversations: %w", err)
		}
		if first {
			badge, cursor = res.GetBadge(), res.GetSyncCursor()
		}
		for _, c := range res.GetConversations() {
			out = append(out, conversationOut(c))
		}
		token = res.GetNextPageToken()
		if token == "" || (limit > 0 && len(out) >= limit) {
			return out, badge, cursor, nil
		}
	}
}

func (c *cli) conversations(ctx context.Context, limit int) error {
	a, err := c.login()
	if err != nil {
		return err
	}
	convs, badge, _, err := listConversations(ctx, a, limit)
	if err != nil {
		return err
	}
	if convs == nil {
		convs = []conversationJSON{}
	}
	names := newUserNames(a)
	if !c.g.json {
		var ids []string
		for _, cv := range convs {
			ids = append(ids, cv.PeerUserID)
			if cv.LastMessage != nil {
				ids = append(ids, cv.LastMessage.SenderUserID)
			}
		}
		names.load(ctx, ids)
	}
	return c.output(map[string]any{"badge": badge, "conversations": convs}, func(w io.Writer) {
		rows := make([][]string, len(convs))
		for i, cv := range convs {
			last := ""
			if m := cv.LastMessage; m != nil {
				last = truncate(names.name(m.SenderUserID)+": "+body(*m), 48)
			}
			rows[i] = []string{cv.ConversationID, cv.Type, truncate(label(cv, names.name), 24),
				strconv.FormatUint(cv.UnreadCount, 10), strconv.FormatUint(cv.LastSeq, 10), last}
		}
		table(w, []string{"CONVERSATION ID", "TYPE", "NAME", "UNREAD", "LAST SEQ", "LAST MESSAGE"}, rows)
		fmt.Fprintf(w, "badge: %d unread\n", badge)
	})
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// checkIDs rejects arguments that are not UUIDs before asking the server.
func checkIDs(what string, ids ...string) error {
	for _, id := range ids {
		if _, err := uuid.Parse(id); err != nil {
			return usagef("%q is not a %s id: ids are UUIDs (register, whoami and conversations print them)", id, what)
		}
	}
	return nil
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, usagef("%q is not a seq: want a positive number", s)
	}
	return seq, nil
}

func (c *cli) direct(ctx context.Context, peer string) error {
	if err := checkIDs("user", peer); err != nil {
		return fmt.Errorf("%w; usernames cannot be looked up with this API, so use the peer's user id", err)
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.convs.CreateDirectConversation(ctx, &chatv1.CreateDirectConversationRequest{PeerUserId: peer})
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	conv := conversationOut(res.GetConversation())
	names := newUserNames(a)
	if !c.g.json {
		names.load(ctx, []string{peer})
	}
	return c.output(map[string]any{"conversation": conv, "created": res.GetCreated()}, func(w io.Writer) {
		state := "existing"
		if res.GetCreated() {
			state = "new"
		}
		fmt.Fprintf(w, "%s  direct conversation with %s (%s)\n", conv.ConversationID, names.name(peer), state)
	})
}

func (c *cli) groupCreate(ctx context.Context, title string, members []string) error {
	if err := checkIDs("user", members...); err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.convs.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: title, MemberUserIds: members})
	if err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	conv := conversationOut(res.GetConversation())
	return c.output(map[string]any{"conversation": conv}, func(w io.Writer) {
		fmt.Fprintf(w, "%s  group %q with %d members\n", conv.ConversationID, conv.Title, conv.MemberCount)
	})
}

// printChange reports the event a membership change added, if any.
func (c *cli) printChange(what string, ev *chatv1.Event) error {
	if ev == nil {
		return c.output(map[string]any{"event": nil}, func(w io.Writer) { fmt.Fprintf(w, "nothing changed\n") })
	}
	e := eventOut(ev)
	return c.output(map[string]any{"event": e}, func(w io.Writer) {
		fmt.Fprintf(w, "%s (event #%d in %s)\n", what, e.Seq, e.ConversationID)
	})
}

func (c *cli) groupAdd(ctx context.Context, conv string, users []string) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	if err := checkIDs("user", users...); err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.convs.AddMembers(ctx, &chatv1.AddMembersRequest{ConversationId: conv, UserIds: users})
	if err != nil {
		return fmt.Errorf("add members: %w", err)
	}
	return c.printChange(fmt.Sprintf("added %d members", len(res.GetEvent().GetMembersAdded().GetUserIds())), res.GetEvent())
}

func (c *cli) groupRemove(ctx context.Context, conv, user string) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	if err := checkIDs("user", user); err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.convs.RemoveMember(ctx, &chatv1.RemoveMemberRequest{ConversationId: conv, UserId: user})
	if err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	return c.printChange("removed "+user, res.GetEvent())
}

func (c *cli) groupRename(ctx context.Context, conv, title string) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.convs.UpdateConversation(ctx, &chatv1.UpdateConversationRequest{ConversationId: conv, Title: title})
	if err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return c.printChange(fmt.Sprintf("renamed to %q", title), res.GetEvent())
}

func (c *cli) groupLeave(ctx context.Context, conv string) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.convs.LeaveConversation(ctx, &chatv1.LeaveConversationRequest{ConversationId: conv})
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return c.printChange("left", res.GetEvent())
}

func (c *cli) groupMembers(ctx context.Context, conv string) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	out := []memberJSON{}
	for token := ""; ; {
		res, err := a.convs.ListMembers(ctx, &chatv1.ListMembersRequest{ConversationId: conv, PageSize: 1000, PageToken: token})
		if err != nil {
			return fmt.Errorf("list members: %w", err)
		}
		for _, m := range res.GetMembers() {
			out = append(out, memberOut(m))
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	names := newUserNames(a)
	if !c.g.json {
		ids := make([]string, len(out))
		for i, m := range out {
			ids[i] = m.UserID
		}
		names.load(ctx, ids)
	}
	return c.output(map[string]any{"members": out}, func(w io.Writer) {
		rows := make([][]string, len(out))
		for i, m := range out {
			rows[i] = []string{m.UserID, names.name(m.UserID), m.Role, strconv.FormatUint(m.JoinedSeq, 10), strconv.FormatUint(m.ReadSeq, 10)}
		}
		table(w, []string{"USER ID", "USERNAME", "ROLE", "JOINED SEQ", "READ SEQ"}, rows)
	})
}

func (c *cli) markRead(ctx context.Context, conv, seqArg string) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	seq, err := parseSeq(seqArg)
	if err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.msgs.MarkRead(ctx, &chatv1.MarkReadRequest{ConversationId: conv, Seq: seq})
	if err != nil {
		return fmt.Errorf("mark read: %w", err)
	}
	m := markerOut(res.GetMarker())
	return c.output(map[string]any{"marker": m, "unread_count": res.GetUnreadCount(), "badge": res.GetBadge()}, func(w io.Writer) {
		fmt.Fprintf(w, "read up to #%d; %d unread here, badge %d\n", m.ReadSeq, res.GetUnreadCount(), res.GetBadge())
	})
}

func (c *cli) receipts(ctx context.Context, conv, seqArg string, unread bool, limit int) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	seq, err := parseSeq(seqArg)
	if err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	filter := chatv1.ReadFilter_READ_FILTER_READ
	if unread {
		filter = chatv1.ReadFilter_READ_FILTER_UNREAD
	}
	res, err := a.msgs.ListReadReceipts(ctx, &chatv1.ListReadReceiptsRequest{ConversationId: conv, Seq: seq, Filter: filter, PageSize: int32(limit)})
	if err != nil {
		return fmt.Errorf("read receipts of #%d: %w", seq, err)
	}
	out := make([]markerJSON, len(res.GetMarkers()))
	ids := make([]string, len(out))
	for i, m := range res.GetMarkers() {
		out[i], ids[i] = markerOut(m), m.GetUserId()
	}
	names := newUserNames(a)
	if !c.g.json {
		names.load(ctx, ids)
	}
	return c.output(map[string]any{"markers": out, "read_count": res.GetReadCount(), "unread_count": res.GetUnreadCount()}, func(w io.Writer) {
		rows := make([][]string, len(out))
		for i, m := range out {
			rows[i] = []string{m.UserID, names.name(m.UserID), strconv.FormatUint(m.ReadSeq, 10), clock(m.UpdateTime)}
		}
		table(w, []string{"USER ID", "USERNAME", "READ SEQ", "UPDATED"}, rows)
		fmt.Fprintf(w, "#%d read by %d, unread by %d\n", seq, res.GetReadCount(), res.GetUnreadCount())
	})
}
