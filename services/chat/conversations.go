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
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/safetext"
	"github.com/wagglechat/waggle/services/contact/block"
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
	lo, hi := uid.String(), peer.String()
	if hi < lo {
		lo, hi = hi, lo
	}
	key := lo + ":" + hi

	var convID uuid.UUID
	created := false
	var ev *chatv1.Event
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUsers(ctx, tx, []uuid.UUID{peer}); err != nil {
			return err
		}
		if blocked, err := block.IsBlockedBy(ctx, tx, uid, peer); err != nil {
			return err
		} else if blocked {
			return errBlocked
		}
		newID, err := uuid.NewV7()
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `INSERT INTO conversations (id, type, direct_key, member_count) VALUES ($1, $2, $3, 2)
			ON CONFLICT (direct_key) DO NOTHING RETURNING id`, newID, chatv1.ConversationType_CONVERSATION_TYPE_DIRECT, key).Scan(&convID)
		if errors.Is(err, pgx.ErrNoRows) {
			return tx.QueryRow(ctx, `SELECT id FROM conversations WHERE direct_key = $1`, key).Scan(&convID)
		}
		if err != nil {
			return fmt.Errorf("insert conversation: %w", err)
		}
		created = true
		if _, err := tx.Exec(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq)
			VALUES ($1, $2, $4, 0), ($1, $3, $4, 0)`, convID, uid, peer, chatv1.MemberRole_MEMBER_ROLE_MEMBER); err != nil {
			return fmt.Errorf("insert members: %w", err)
		}
		ev, err = appendEvent(ctx, tx, convID, uid, id.DeviceID, &chatv1.Event{Kind: &chatv1.Event_ConversationCreated{
			ConversationCreated: &chatv1.ConversationCreated{
				Type:          chatv1.ConversationType_CONVERSATION_TYPE_DIRECT,
				MemberUserIds: []string{uid.String(), peer.String()},
			}}}, false)
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
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := requireUsers(ctx, tx, others); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO conversations (id, type, title, member_count) VALUES ($1, $2, $3, $4)`,
			convID, chatv1.ConversationType_CONVERSATION_TYPE_GROUP, req.GetTitle(), len(others)+1); err != nil {
			return fmt.Errorf("insert conversation: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq)
			SELECT $1, u, CASE WHEN u = $2 THEN $3::smallint ELSE $4::smallint END, 0 FROM unnest($5::uuid[]) AS u`,
			convID, uid, chatv1.MemberRole_MEMBER_ROLE_OWNER, chatv1.MemberRole_MEMBER_ROLE_MEMBER, append([]uuid.UUID{uid}, others...)); err != nil {
			return fmt.Errorf("insert members: %w", err)
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
			}}}, false)
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

// conversationQuery reads conversations as member $1 sees them: unread
// counts are derived from the sequence and the read marker, never stored.
const conversationQuery = `
	SELECT c.id, c.type, c.title, c.last_seq, c.member_count, c.create_time, c.update_time,
		m.role, m.joined_seq, m.join_time, m.read_seq, m.muted,
		(SELECT count(*) FROM events u WHERE u.conversation_id = c.id AND ` + unreadFilter + `),
		(SELECT p.user_id FROM members p WHERE c.type = 1 AND p.conversation_id = c.id AND p.user_id <> m.user_id),
		last.*
	FROM members m JOIN conversations c ON c.id = m.conversation_id
	LEFT JOIN LATERAL (
		SELECT ` + eventColumns + ` FROM events e
		WHERE e.conversation_id = c.id AND e.kind = 1 AND e.seq > m.joined_seq AND ` + notHidden + `
		ORDER BY e.seq DESC LIMIT 1) last ON true
	WHERE m.user_id = $1 AND m.left_seq IS NULL`

func scanConversation(row pgx.Row) (*chatv1.Conversation, error) {
	c := &chatv1.Conversation{Self: &chatv1.Member{}}
	var id uuid.UUID
	var peer *uuid.UUID
	var created, updated, joined time.Time
	var last struct {
		convID               *uuid.UUID
		seq                  *int64
		kind                 *int16
		actor                *uuid.UUID
		device               *uuid.UUID
		created              *time.Time
		body                 []byte
		messageID            *uuid.UUID
		clientMsgID          *string
		editTime, recallTime *time.Time
	}
	err := row.Scan(&id, &c.Type, &c.Title, &c.LastSeq, &c.MemberCount, &created, &updated,
		&c.Self.Role, &c.Self.JoinedSeq, &joined, &c.Self.ReadSeq, &c.Self.Muted, &c.UnreadCount, &peer,
		&last.convID, &last.seq, &last.kind, &last.actor, &last.device, &last.created, &last.body,
		&last.messageID, &last.clientMsgID, &last.editTime, &last.recallTime)
	if err != nil {
		return nil, err
	}
	c.ConversationId = id.String()
	c.CreateTime = timestamppb.New(created)
	c.UpdateTime = timestamppb.New(updated)
	c.Self.JoinTime = timestamppb.New(joined)
	if peer != nil {
		c.PeerUserId = peer.String()
	}
	if last.seq != nil {
		r := eventRow{convID: *last.convID, seq: *last.seq, kind: *last.kind, actor: *last.actor, device: last.device,
			created: *last.created, body: last.body, messageID: last.messageID, clientMsgID: last.clientMsgID,
			editTime: last.editTime, recallTime: last.recallTime}
		if c.LastMessage, err = r.message(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// conversation returns convID as uid sees it, or errNoConversation.
func (s *Service) conversation(ctx context.Context, uid, convID uuid.UUID) (*chatv1.Conversation, error) {
	c, err := scanConversation(s.db.QueryRow(ctx, conversationQuery+` AND c.id = $2`, uid, convID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoConversation
	}
	if err != nil {
		return nil, s.internal(ctx, "get conversation", err)
	}
	c.Self.UserId = uid.String()
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
	cursor, err := s.currentCursor(ctx)
	if err != nil {
		return nil, s.internal(ctx, "list conversations", err)
	}
	rows, err := s.db.Query(ctx, conversationQuery+`
		AND (c.update_time, c.id) < ($2, $3) ORDER BY c.update_time DESC, c.id DESC LIMIT $4`,
		uid, after.Time, after.ID, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list conversations", err)
	}
	convs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.Conversation, error) { return scanConversation(r) })
	if err != nil {
		return nil, s.internal(ctx, "list conversations", err)
	}
	res := &chatv1.ListConversationsResponse{SyncCursor: cursor}
	if len(convs) > size {
		convs = convs[:size]
		last := convs[size-1]
		res.NextPageToken = listPosition{Time: last.GetUpdateTime().AsTime(), ID: uuid.MustParse(last.GetConversationId())}.encode()
	}
	for _, c := range convs {
		c.Self.UserId = uid.String()
	}
	res.Conversations = convs
	if res.Badge, err = s.badge(ctx, uid); err != nil {
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
	b, err := s.badge(ctx, uid)
	if err != nil {
		return nil, s.internal(ctx, "get badge", err)
	}
	return &chatv1.GetBadgeResponse{Badge: b}, nil
}

// unreadFilter selects, for member m, the events u that count as unread:
// messages after the read marker (and the join), not the member's own, not
// recalled, not deleted for the member. Counts are derived from the sequence
// and the marker on every read, so they cannot drift.
const unreadFilter = `u.kind = 1 AND u.seq > greatest(m.read_seq, m.joined_seq)
	AND (m.left_seq IS NULL OR u.seq <= m.left_seq) AND u.actor_id <> m.user_id AND u.recall_time IS NULL
	AND NOT EXISTS (SELECT 1 FROM hidden_messages h
		WHERE h.user_id = m.user_id AND h.conversation_id = u.conversation_id AND h.message_seq = u.seq)`

// notHidden excludes messages e that member m deleted for themselves.
const notHidden = `NOT EXISTS (SELECT 1 FROM hidden_messages h
	WHERE h.user_id = m.user_id AND h.conversation_id = e.conversation_id AND h.message_seq = e.seq)`

// badge is the user's total unread over conversations not muted.
func (s *Service) badge(ctx context.Context, uid uuid.UUID) (uint64, error) {
	var n uint64
	err := s.db.QueryRow(ctx, `
		SELECT count(*) FROM members m JOIN events u ON u.conversation_id = m.conversation_id
		WHERE m.user_id = $1 AND m.left_seq IS NULL AND NOT m.muted AND `+unreadFilter,
		uid).Scan(&n)
	return n, err
}

// membership is the caller's role in a conversation whose row it has locked.
type membership struct {
	convType chatv1.ConversationType
	role     chatv1.MemberRole
	count    int
}

// lockMembership locks the conversation for a membership change and returns
// the caller's current role, or errNoConversation.
func lockMembership(ctx context.Context, tx pgx.Tx, convID, uid uuid.UUID) (membership, error) {
	var m membership
	if _, err := tx.Exec(ctx, lockConversation, convID); err != nil {
		return m, fmt.Errorf("lock conversation: %w", err)
	}
	err := tx.QueryRow(ctx, `SELECT c.type, m.role, c.member_count FROM conversations c
		JOIN members m ON m.conversation_id = c.id AND m.user_id = $2 AND m.left_seq IS NULL
		WHERE c.id = $1`, convID, uid).Scan(&m.convType, &m.role, &m.count)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, errNoConversation
	}
	if err != nil {
		return m, fmt.Errorf("lock conversation: %w", err)
	}
	if m.convType == chatv1.ConversationType_CONVERSATION_TYPE_DIRECT {
		return m, connect.NewError(connect.CodeFailedPrecondition, errors.New(errNotDirectAction))
	}
	return m, nil
}

func (m membership) require(role chatv1.MemberRole, action string) error {
	if m.role < role {
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
func memberRole(ctx context.Context, tx pgx.Tx, convID, user uuid.UUID) (chatv1.MemberRole, error) {
	var role chatv1.MemberRole
	err := tx.QueryRow(ctx, `SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL`,
		convID, user).Scan(&role)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, connect.NewError(connect.CodeNotFound, fmt.Errorf("user %s is not a member", user))
	}
	return role, err
}

// change runs a membership change in a transaction holding the
// conversation's lock and notifies its events after the commit.
func (s *Service) change(ctx context.Context, op string, convIDField string, fn func(tx pgx.Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error)) ([]*chatv1.Event, error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", convIDField)
	if err != nil {
		return nil, err
	}
	var evs []*chatv1.Event
	err = s.inTx(ctx, func(tx pgx.Tx) error {
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
	evs, err := s.change(ctx, "rename conversation", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		if err := m.require(chatv1.MemberRole_MEMBER_ROLE_ADMIN, "rename a group"); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE conversations SET title = $2 WHERE id = $1`, convID, req.GetTitle()); err != nil {
			return nil, err
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_ConversationRenamed{
			ConversationRenamed: &chatv1.ConversationRenamed{Title: req.GetTitle()}}}, true)
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
	evs, err := s.change(ctx, "add members", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
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
		rows, err := tx.Query(ctx, `SELECT u FROM unnest($2::uuid[]) AS u WHERE NOT EXISTS (
			SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = u AND left_seq IS NULL)`, convID, ids)
		if err != nil {
			return nil, err
		}
		fresh, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil || len(fresh) == 0 {
			return nil, err
		}
		if m.count+len(fresh) > s.cfg.MaxGroupMembers {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("a group has at most %d members", s.cfg.MaxGroupMembers))
		}
		names := make([]string, len(fresh))
		for i, u := range fresh {
			names[i] = u.String()
		}
		ev, err := appendEvent(ctx, tx, convID, uid, device, &chatv1.Event{Kind: &chatv1.Event_MembersAdded{
			MembersAdded: &chatv1.MembersAdded{UserIds: names}}}, true)
		if err != nil {
			return nil, err
		}
		// New members see from the MembersAdded event on; a returning member
		// starts over (its earlier history is not shown again).
		joined := int64(ev.GetSeq()) - 1
		if _, err := tx.Exec(ctx, `INSERT INTO members (conversation_id, user_id, role, joined_seq, read_seq)
			SELECT $1, u, $3, $4, $4 FROM unnest($2::uuid[]) AS u
			ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, joined_seq = excluded.joined_seq,
				read_seq = excluded.read_seq, left_seq = NULL, join_time = now()`,
			convID, fresh, chatv1.MemberRole_MEMBER_ROLE_MEMBER, joined); err != nil {
			return nil, fmt.Errorf("insert members: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE conversations SET member_count = member_count + $2 WHERE id = $1`, convID, len(fresh)); err != nil {
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
func removeMember(ctx context.Context, tx pgx.Tx, convID, actor uuid.UUID, device string, target uuid.UUID, reason chatv1.RemovalReason) ([]*chatv1.Event, error) {
	ev, err := appendEvent(ctx, tx, convID, actor, device, &chatv1.Event{Kind: &chatv1.Event_MemberRemoved{
		MemberRemoved: &chatv1.MemberRemoved{UserId: target.String(), Reason: reason}}}, true)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE members SET left_seq = $3 WHERE conversation_id = $1 AND user_id = $2`,
		convID, target, int64(ev.GetSeq())); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE conversations SET member_count = member_count - 1 WHERE id = $1`, convID); err != nil {
		return nil, err
	}
	return []*chatv1.Event{ev}, nil
}

func (s *Service) RemoveMember(ctx context.Context, req *chatv1.RemoveMemberRequest) (*chatv1.RemoveMemberResponse, error) {
	evs, err := s.change(ctx, "remove member", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
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
		if role >= m.role {
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
	evs, err := s.change(ctx, "leave conversation", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
		if m.role == chatv1.MemberRole_MEMBER_ROLE_OWNER && m.count > 1 {
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
func setRole(ctx context.Context, tx pgx.Tx, convID, actor uuid.UUID, device string, target uuid.UUID, role chatv1.MemberRole) (*chatv1.Event, error) {
	if _, err := tx.Exec(ctx, `UPDATE members SET role = $3 WHERE conversation_id = $1 AND user_id = $2`, convID, target, role); err != nil {
		return nil, err
	}
	return appendEvent(ctx, tx, convID, actor, device, &chatv1.Event{Kind: &chatv1.Event_MemberRoleChanged{
		MemberRoleChanged: &chatv1.MemberRoleChanged{UserId: target.String(), Role: role}}}, true)
}

func (s *Service) SetMemberRole(ctx context.Context, req *chatv1.SetMemberRoleRequest) (*chatv1.SetMemberRoleResponse, error) {
	evs, err := s.change(ctx, "set member role", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
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
	evs, err := s.change(ctx, "transfer ownership", req.GetConversationId(), func(tx pgx.Tx, convID, uid uuid.UUID, device string, m membership) ([]*chatv1.Event, error) {
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
	rows, err := s.db.Query(ctx, `
		SELECT m.user_id, m.role, m.joined_seq, m.join_time, m.read_seq, m.muted AND m.user_id = $2
		FROM members m WHERE m.conversation_id = $1 AND m.left_seq IS NULL AND m.user_id > $3
			AND EXISTS (SELECT 1 FROM members me WHERE me.conversation_id = $1 AND me.user_id = $2 AND me.left_seq IS NULL)
		ORDER BY m.user_id LIMIT $4`, convID, uid, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list members", err)
	}
	members, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.Member, error) {
		var m chatv1.Member
		var user uuid.UUID
		var joined time.Time
		if err := r.Scan(&user, &m.Role, &m.JoinedSeq, &joined, &m.ReadSeq, &m.Muted); err != nil {
			return nil, err
		}
		m.UserId, m.JoinTime = user.String(), timestamppb.New(joined)
		return &m, nil
	})
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
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var was bool
		err := tx.QueryRow(ctx, `SELECT muted FROM members WHERE conversation_id = $1 AND user_id = $2 AND left_seq IS NULL FOR UPDATE`,
			convID, uid).Scan(&was)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNoConversation
		}
		if err != nil || was == req.GetMuted() {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE members SET muted = $3 WHERE conversation_id = $1 AND user_id = $2`, convID, uid, req.GetMuted()); err != nil {
			return err
		}
		// The setting is the user's own, synced to all of their devices.
		ev, err = AppendUserEvent(ctx, tx, uid, &chatv1.UserEvent{Kind: &chatv1.UserEvent_ConversationMuted{
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
func requireUsers(ctx context.Context, tx pgx.Tx, ids []uuid.UUID) error {
	if len(ids) == 0 {
		return nil
	}
	var missing *uuid.UUID
	err := tx.QueryRow(ctx, `SELECT u FROM unnest($1::uuid[]) AS u WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = u) LIMIT 1`,
		ids).Scan(&missing)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check users: %w", err)
	}
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("user %s not found", missing))
}
