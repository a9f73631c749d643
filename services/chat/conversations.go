package chat

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/safetext"
)

// errBlocked refuses a user the other member of a direct conversation has
// blocked. It says so plainly: the blocked user learns only that they
// cannot write, which every chat app shows.
var errBlocked = connect.NewError(connect.CodePermissionDenied, errors.New("this user does not accept your messages"))

const (
	maxTitleChars      = 128
	maxMembersPerCall  = 1000
	errNotDirectAction = "direct conversations have exactly two members and no roles"
)

// CreateDirectConversation finds or creates the pair's conversation. The
// pair's key is unique in the table, so two concurrent first calls still
// create one conversation.
func (s *Service) CreateDirectConversation(ctx context.Context, req *chatv1.CreateDirectConversationRequest) (*chatv1.CreateDirectConversationResponse, error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	peer, err := parseID("peer_user_id", req.GetPeerUserId())
	if err != nil {
		return nil, err
	}
	if peer == uid {
		return nil, invalid("cannot start a direct conversation with yourself")
	}
	var convID uuid.UUID
	created := false
	var ev *chatv1.Event
	err = s.store.InTx(ctx, func(tx Tx) error {
		if err := requireUsers(ctx, tx, []uuid.UUID{peer}); err != nil {
			return err
		}
		if blocked, err := tx.IsBlockedBy(ctx, uid, peer); err != nil {
			return err
		} else if blocked {
			return errBlocked
		}
		newID, err := uuid.NewV7()
		if err != nil {
			return err
		}
		if convID, created, err = tx.CreateDirect(ctx, newID, uid, peer); err != nil || !created {
			return err
		}
		ev, err = appendEvent(ctx, tx, convID, uid, id.DeviceID, &chatv1.Event{Kind: &chatv1.Event_ConversationCreated{
			ConversationCreated: &chatv1.ConversationCreated{
				Type:          chatv1.ConversationType_CONVERSATION_TYPE_DIRECT,
				MemberUserIds: []string{uid.String(), peer.String()},
			}}}, false, nil)
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "create direct conversation", err)
	}
	if ev != nil {
		s.notify.Notify(ctx, Committed{Event: ev, SenderSessionID: sessionID(ctx)})
	}
	conv, err := s.conversation(ctx, uid, convID)
	if err != nil {
		return nil, err
	}
	return &chatv1.CreateDirectConversationResponse{Conversation: conv, Created: created}, nil
}

// CreateGroupConversation creates a group owned by the caller.
func (s *Service) CreateGroupConversation(ctx context.Context, req *chatv1.CreateGroupConversationRequest) (*chatv1.CreateGroupConversationResponse, error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := validTitle(req.GetTitle()); err != nil {
		return nil, err
	}
	others, err := userIDs("member_user_ids", req.GetMemberUserIds(), uid)
	if err != nil {
		return nil, err
	}
	if len(others)+1 > s.cfg.MaxGroupMembers {
		return nil, invalid("a group has at most %d members", s.cfg.MaxGroupMembers)
	}
	convID, err := uuid.NewV7()
	if err != nil {
		return nil, s.internal(ctx, "create group", err)
	}
	var ev *chatv1.Event
	err = s.store.InTx(ctx, func(tx Tx) error {
		if err := requireUsers(ctx, tx, others); err != nil {
			return err
		}
		if err := tx.CreateGroup(ctx, convID, req.GetTitle(), uid, others); err != nil {
			return err
		}
		all := []string{uid.String()}
		for _, o := range others {
			all = append(all, o.String())
		}
		ev, err = appendEvent(ctx, tx, convID, uid, id.DeviceID, &chatv1.Event{Kind: &chatv1.Event_ConversationCreated{
			ConversationCreated: &chatv1.ConversationCreated{
				Type:          chatv1.ConversationType_CONVERSATION_TYPE_GROUP,
				Title:         req.GetTitle(),
				MemberUserIds: all,
			}}}, false, nil)
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "create group", err)
	}
	s.notify.Notify(ctx, Committed{Event: ev, SenderSessionID: sessionID(ctx)})
	conv, err := s.conversation(ctx, uid, convID)
	if err != nil {
		return nil, err
	}
	return &chatv1.CreateGroupConversationResponse{Conversation: conv}, nil
}

func (s *Service) GetConversation(ctx context.Context, req *chatv1.GetConversationRequest) (*chatv1.GetConversationResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	conv, err := s.conversation(ctx, uid, convID)
	if err != nil {
		return nil, err
	}
	return &chatv1.GetConversationResponse{Conversation: conv}, nil
}

// conversationOf is a stored conversation in its API form, as viewer sees
// it. Unread counts are derived from the sequence and the read marker,
// never stored.
func conversationOf(viewer uuid.UUID, r ConversationRow) (*chatv1.Conversation, error) {
	c := &chatv1.Conversation{
		ConversationId: r.ID.String(), Type: r.Type, Title: r.Title, LastSeq: r.LastSeq, MemberCount: r.MemberCount,
		CreateTime: timestamppb.New(r.Created), UpdateTime: timestamppb.New(r.Updated), UnreadCount: r.Unread,
		Self: &chatv1.Member{UserId: viewer.String(), Role: r.Role, JoinedSeq: r.JoinedSeq, JoinTime: timestamppb.New(r.JoinTime),
			ReadSeq: r.ReadSeq, Muted: r.Muted},
	}
	if r.Peer != nil {
		c.PeerUserId = r.Peer.String()
	}
	if r.Last != nil {
		var err error
		if c.LastMessage, err = decodeMessage(*r.Last); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// conversation returns convID as uid sees it, or errNoConversation.
func (s *Service) conversation(ctx context.Context, uid, convID uuid.UUID) (*chatv1.Conversation, error) {
	r, err := s.store.Conversation(ctx, uid, convID)
	if err != nil {
		return nil, s.internal(ctx, "get conversation", err)
	}
	c, err := conversationOf(uid, r)
	if err != nil {
		return nil, s.internal(ctx, "get conversation", err)
	}
	return c, nil
}

func (s *Service) ListConversations(ctx context.Context, req *chatv1.ListConversationsRequest) (*chatv1.ListConversationsResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize(), 50, 500)
	if err != nil {
		return nil, err
	}
	after := listPosition{Time: time.Unix(1<<40, 0)}
	if req.GetPageToken() != "" {
		if after, err = decodeListPosition(req.GetPageToken()); err != nil {
			return nil, err
		}
	}
	// The cursor is taken before the list is read, so a device that shows
	// this list and then syncs from the cursor misses nothing.
	cursor, err := s.store.SyncCursor(ctx)
	if err != nil {
		return nil, s.internal(ctx, "list conversations", err)
	}
	rows, err := s.store.ListConversations(ctx, uid, after.Time, after.ID, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list conversations", err)
	}
	convs := make([]*chatv1.Conversation, len(rows))
	for i, r := range rows {
		if convs[i], err = conversationOf(uid, r); err != nil {
			return nil, s.internal(ctx, "list conversations", err)
		}
	}
	res := &chatv1.ListConversationsResponse{SyncCursor: cursor}
	if len(convs) > size {
		convs = convs[:size]
		last := convs[size-1]
		res.NextPageToken = listPosition{Time: last.GetUpdateTime().AsTime(), ID: uuid.MustParse(last.GetConversationId())}.encode()
	}
	res.Conversations = convs
	if res.Badge, err = s.store.Badge(ctx, uid); err != nil {
		return nil, s.internal(ctx, "list conversations", err)
	}
	return res, nil
}

// listPosition is where a ListConversations page ends.
type listPosition struct {
	Time time.Time
	ID   uuid.UUID
}

func (p listPosition) encode() string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d/%s", p.Time.UnixNano(), p.ID))
}

func decodeListPosition(tok string) (listPosition, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return listPosition{}, invalid("malformed page_token")
	}
	var nanos int64
	var id string
	if _, err := fmt.Sscanf(string(raw), "%d/%s", &nanos, &id); err != nil {
		return listPosition{}, invalid("malformed page_token")
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return listPosition{}, invalid("malformed page_token")
	}
	return listPosition{Time: time.Unix(0, nanos), ID: u}, nil
}

func (s *Service) GetBadge(ctx context.Context, _ *chatv1.GetBadgeRequest) (*chatv1.GetBadgeResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	b, err := s.store.Badge(ctx, uid)
	if err != nil {
		return nil, s.internal(ctx, "get badge", err)
	}
	return &chatv1.GetBadgeResponse{Badge: b}, nil
}

// membership is the caller's role in a conversation whose lock it holds.
type membership Membership

// lockMembership locks the conversation for a membership change and returns
// the caller's current role: NotFound unless a current member, and
// FailedPrecondition for a direct conversation.
func lockMembership(ctx context.Context, tx Tx, convID, uid uuid.UUID) (membership, error) {
	m, err := tx.LockMembership(ctx, convID, uid)
	if err != nil {
		return membership(m), err
	}
	if m.Type == chatv1.ConversationType_CONVERSATION_TYPE_DIRECT {
		return membership(m), connect.NewError(connect.CodeFailedPrecondition, errors.New(errNotDirectAction))
	}
	return membership(m), nil
}

func (m membership) require(role chatv1.MemberRole, action string) error {
	if m.Role < role {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("only %s may %s", roleName(role), action))
	}
	return nil
}

func roleName(r chatv1.MemberRole) string {
	if r == chatv1.MemberRole_MEMBER_ROLE_OWNER {
		return "the owner"
	}
	return "admins and the owner"
}

// memberRole returns a current member's role, or NotFound.
func memberRole(ctx context.Context, tx Tx, convID, user uuid.UUID) (chatv1.MemberRole, error) {
	role, err := tx.MemberRole(ctx, convID, user)
	return role, notFound(err, "user %s is not a member", user)
}

// change runs a membership change in a transaction holding the
// conversation's lock and notifies its events after the commit.
func (s *Service) change(ctx context.Context, op string, convIDField string, fn func(tx Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error)) ([]*chatv1.Event, error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", convIDField)
	if err != nil {
		return nil, err
	}
	var evs []*chatv1.Event
	err = s.store.InTx(ctx, func(tx Tx) error {
		m, err := lockMembership(ctx, tx, convID, uid)
		if err != nil {
			return err
		}
		evs, err = fn(tx, convID, uid, id.DeviceID, m)
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, op, err)
	}
	for _, ev := range evs {
		s.notify.Notify(ctx, Committed{Event: ev, SenderSessionID: sessionID(ctx)})
	}
	return evs, nil
}

func first(evs []*chatv1.Event) *chatv1.Event {
	if len(evs) == 0 {
		return nil
	}
	return evs[0]
}

func (s *Service) UpdateConversation(ctx context.Context, req *chatv1.UpdateConversationRequest) (*chatv1.UpdateConversationResponse, error) {
	if err := validTitle(req.GetTitle()); err != nil {
		return nil, err
	}
	evs, err := s.change(ctx, "rename conversation", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		if err := m.require(chatv1.MemberRole_MEMBER_ROLE_ADMIN, "rename a group"); err != nil {
			return nil, err
		}
		if err := tx.SetTitle(ctx, convID, req.GetTitle()); err != nil {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_ConversationRenamed{
			ConversationRenamed: &chatv1.ConversationRenamed{Title: req.GetTitle()}}}, true, nil)
		return []*chatv1.Event{ev}, err
	})
	if err != nil {
		return nil, err
	}
	_, uid, _ := auth.Caller(ctx)
	conv, err := s.conversation(ctx, uid, uuid.MustParse(req.GetConversationId()))
	if err != nil {
		return nil, err
	}
	return &chatv1.UpdateConversationResponse{Conversation: conv, Event: first(evs)}, nil
}

func (s *Service) AddMembers(ctx context.Context, req *chatv1.AddMembersRequest) (*chatv1.AddMembersResponse, error) {
	evs, err := s.change(ctx, "add members", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		if err := m.require(chatv1.MemberRole_MEMBER_ROLE_ADMIN, "add members"); err != nil {
			return nil, err
		}
		ids, err := userIDs("user_ids", req.GetUserIds(), uid)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, invalid("user_ids is required")
		}
		if err := requireUsers(ctx, tx, ids); err != nil {
			return nil, err
		}
		fresh, err := tx.NotMembers(ctx, convID, ids)
		if err != nil || len(fresh) == 0 {
			return nil, err
		}
		if m.Count+len(fresh) > s.cfg.MaxGroupMembers {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("a group has at most %d members", s.cfg.MaxGroupMembers))
		}
		names := make([]string, len(fresh))
		for i, u := range fresh {
			names[i] = u.String()
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_MembersAdded{
			MembersAdded: &chatv1.MembersAdded{UserIds: names}}}, true, nil)
		if err != nil {
			return nil, err
		}
		// New members see from the MembersAdded event on; a returning member
		// starts over (its earlier history is not shown again).
		joined := int64(ev.GetSeq()) - 1
		if err := tx.AddMembers(ctx, convID, fresh, joined); err != nil {
			return nil, err
		}
		return []*chatv1.Event{ev}, nil
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.AddMembersResponse{Event: first(evs)}, nil
}

// removeMember ends target's membership with a MemberRemoved event, which is
// the last event target sees.
func removeMember(ctx context.Context, tx Tx, convID, actor uuid.UUID, device string, target uuid.UUID, reason chatv1.RemovalReason) ([]*chatv1.Event, error) {
	ev, err := appendEvent(ctx, tx, convID, actor, device, &chatv1.Event{Kind: &chatv1.Event_MemberRemoved{
		MemberRemoved: &chatv1.MemberRemoved{UserId: target.String(), Reason: reason}}}, true, nil)
	if err != nil {
		return nil, err
	}
	if err := tx.RemoveMember(ctx, convID, target, int64(ev.GetSeq())); err != nil {
		return nil, err
	}
	return []*chatv1.Event{ev}, nil
}

func (s *Service) RemoveMember(ctx context.Context, req *chatv1.RemoveMemberRequest) (*chatv1.RemoveMemberResponse, error) {
	evs, err := s.change(ctx, "remove member", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		target, err := parseID("user_id", req.GetUserId())
		if err != nil {
			return nil, err
		}
		if target == uid {
			return nil, invalid("use LeaveConversation to remove yourself")
		}
		if err := m.require(chatv1.MemberRole_MEMBER_ROLE_ADMIN, "remove members"); err != nil {
			return nil, err
		}
		role, err := memberRole(ctx, tx, convID, target)
		if err != nil {
			return nil, err
		}
		if role >= m.Role {
			return nil, connect.NewError(connect.CodePermissionDenied, errors.New("admins may remove only plain members"))
		}
		return removeMember(ctx, tx, convID, uid, device, target, chatv1.RemovalReason_REMOVAL_REASON_REMOVED)
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.RemoveMemberResponse{Event: first(evs)}, nil
}

func (s *Service) LeaveConversation(ctx context.Context, req *chatv1.LeaveConversationRequest) (*chatv1.LeaveConversationResponse, error) {
	evs, err := s.change(ctx, "leave conversation", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		if m.Role == chatv1.MemberRole_MEMBER_ROLE_OWNER && m.Count > 1 {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the owner must transfer ownership before leaving"))
		}
		return removeMember(ctx, tx, convID, uid, device, uid, chatv1.RemovalReason_REMOVAL_REASON_LEFT)
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.LeaveConversationResponse{Event: first(evs)}, nil
}

// setRole records a role change as an event.
func setRole(ctx context.Context, tx Tx, convID, actor uuid.UUID, device string, target uuid.UUID, role chatv1.MemberRole) (*chatv1.Event, error) {
	if err := tx.SetRole(ctx, convID, target, role); err != nil {
		return nil, err
	}
	return appendEvent(ctx, tx, convID, actor, device, &chatv1.Event{Kind: &chatv1.Event_MemberRoleChanged{
		MemberRoleChanged: &chatv1.MemberRoleChanged{UserId: target.String(), Role: role}}}, true, nil)
}

func (s *Service) SetMemberRole(ctx context.Context, req *chatv1.SetMemberRoleRequest) (*chatv1.SetMemberRoleResponse, error) {
	evs, err := s.change(ctx, "set member role", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		target, err := parseID("user_id", req.GetUserId())
		if err != nil {
			return nil, err
		}
		if r := req.GetRole(); r != chatv1.MemberRole_MEMBER_ROLE_MEMBER && r != chatv1.MemberRole_MEMBER_ROLE_ADMIN {
			return nil, invalid("role must be MEMBER_ROLE_MEMBER or MEMBER_ROLE_ADMIN; use TransferOwnership for the owner")
		}
		if err := m.require(chatv1.MemberRole_MEMBER_ROLE_OWNER, "change roles"); err != nil {
			return nil, err
		}
		if target == uid {
			return nil, invalid("the owner's role changes only through TransferOwnership")
		}
		if _, err := memberRole(ctx, tx, convID, target); err != nil {
			return nil, err
		}
		ev, err := setRole(ctx, tx, convID, uid, device, target, req.GetRole())
		return []*chatv1.Event{ev}, err
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.SetMemberRoleResponse{Event: first(evs)}, nil
}

func (s *Service) TransferOwnership(ctx context.Context, req *chatv1.TransferOwnershipRequest) (*chatv1.TransferOwnershipResponse, error) {
	evs, err := s.change(ctx, "transfer ownership", req.GetConversationId(), func(tx Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		target, err := parseID("new_owner_user_id", req.GetNewOwnerUserId())
		if err != nil {
			return nil, err
		}
		if err := m.require(chatv1.MemberRole_MEMBER_ROLE_OWNER, "transfer ownership"); err != nil {
			return nil, err
		}
		if target == uid {
			return nil, invalid("new_owner_user_id is already the owner")
		}
		if _, err := memberRole(ctx, tx, convID, target); err != nil {
			return nil, err
		}
		promoted, err := setRole(ctx, tx, convID, uid, device, target, chatv1.MemberRole_MEMBER_ROLE_OWNER)
		if err != nil {
			return nil, err
		}
		demoted, err := setRole(ctx, tx, convID, uid, device, uid, chatv1.MemberRole_MEMBER_ROLE_ADMIN)
		return []*chatv1.Event{promoted, demoted}, err
	})
	if err != nil {
		return nil, err
	}
	return &chatv1.TransferOwnershipResponse{Event: first(evs)}, nil
}

func (s *Service) ListMembers(ctx context.Context, req *chatv1.ListMembersRequest) (*chatv1.ListMembersResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize(), 100, 1000)
	if err != nil {
		return nil, err
	}
	after, err := decodeUserToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	members, err := s.store.ListMembers(ctx, convID, uid, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list members", err)
	}
	if len(members) == 0 && req.GetPageToken() == "" {
		return nil, errNoConversation
	}
	res := &chatv1.ListMembersResponse{Members: members}
	if len(members) > size {
		res.Members = members[:size]
		last := uuid.MustParse(members[size-1].GetUserId())
		res.NextPageToken = encodeUserToken(last)
	}
	return res, nil
}

func (s *Service) SetConversationMuted(ctx context.Context, req *chatv1.SetConversationMutedRequest) (*chatv1.SetConversationMutedResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	var ev *chatv1.UserEvent
	err = s.store.InTx(ctx, func(tx Tx) error {
		changed, err := tx.SetMuted(ctx, convID, uid, req.GetMuted())
		if err != nil || !changed {
			return err
		}
		// The setting is the user's own, synced to all of their devices.
		ev, err = tx.AppendUserEvent(ctx, uid, &chatv1.UserEvent{Kind: &chatv1.UserEvent_ConversationMuted{
			ConversationMuted: &chatv1.ConversationMuted{ConversationId: convID.String(), Muted: req.GetMuted()}}})
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "mute conversation", err)
	}
	if ev != nil {
		s.notify.NotifyUser(ctx, uid.String(), ev, "") // the answer does not carry it
	}
	return &chatv1.SetConversationMutedResponse{}, nil
}

func validTitle(t string) error {
	if err := safetext.Check("title", t, false); err != nil {
		return invalid("%v", err)
	}
	if utf8.RuneCountInString(t) > maxTitleChars {
		return invalid("title must be at most %d characters", maxTitleChars)
	}
	if strings.TrimSpace(t) != t {
		return invalid("title must not start or end with spaces")
	}
	return nil
}

// userIDs parses a request's user ids, dropping duplicates and self.
func userIDs(field string, raw []string, self uuid.UUID) ([]uuid.UUID, error) {
	if len(raw) > maxMembersPerCall {
		return nil, invalid("%s has %d ids, at most %d per call", field, len(raw), maxMembersPerCall)
	}
	ids := make([]uuid.UUID, 0, len(raw))
	seen := map[uuid.UUID]bool{self: true}
	for _, r := range raw {
		id, err := parseID(field, r)
		if err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// requireUsers fails with NotFound naming the first id that is not a user.
func requireUsers(ctx context.Context, tx Tx, ids []uuid.UUID) error {
	missing, err := tx.MissingUser(ctx, ids)
	if err != nil || missing == uuid.Nil {
		return err
	}
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("user %s not found", missing))
}
