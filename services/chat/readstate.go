package chat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// MarkRead moves the caller's read marker forward (never back), records it
// in the caller's own event stream so every device of the caller applies it,
// and shows it to the other members of direct and small group conversations
// (see Config.ReceiptPushLimit); larger groups pull receipts instead.
func (s *Service) MarkRead(ctx context.Context, req *chatv1.MarkReadRequest) (*chatv1.MarkReadResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	seq, err := seqArg("seq", req.GetSeq())
	if err != nil {
		return nil, err
	}
	var (
		readSeq, before int64
		members         int
		at              time.Time
		userEvent       *chatv1.UserEvent
	)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var last int64
		err := tx.QueryRow(ctx, `SELECT m.read_seq, c.last_seq, c.member_count, now() FROM members m
			JOIN conversations c ON c.id = m.conversation_id
			WHERE m.conversation_id = $1 AND m.user_id = $2 AND m.left_seq IS NULL FOR UPDATE OF m`,
			convID, uid).Scan(&before, &last, &members, &at)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNoConversation
		}
		if err != nil {
			return err
		}
		readSeq = min(seq, last)
		if readSeq <= before {
			readSeq = before // markers never move back
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE members SET read_seq = $3 WHERE conversation_id = $1 AND user_id = $2`,
			convID, uid, readSeq); err != nil {
			return err
		}
		userEvent, err = AppendUserEvent(ctx, tx, uid, &chatv1.UserEvent{Kind: &chatv1.UserEvent_ReadMarker{ReadMarker: &chatv1.ReadMarker{
			ConversationId: convID.String(), UserId: uid.String(), ReadSeq: uint64(readSeq), UpdateTime: timestamppb.New(at)}}})
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "mark read", err)
	}
	marker := &chatv1.ReadMarker{ConversationId: convID.String(), UserId: uid.String(), ReadSeq: uint64(readSeq), UpdateTime: timestamppb.New(at)}
	res := &chatv1.MarkReadResponse{Marker: marker}
	if res.UnreadCount, res.Badge, err = s.unread(ctx, uid, convID); err != nil {
		return nil, s.internal(ctx, "mark read", err)
	}
	if userEvent != nil {
		// The answer does not carry the user event, so the calling session
		// gets it pushed like the user's other devices (else it would see a
		// gap in its user sequence).
		s.notify.NotifyUser(ctx, uid.String(), userEvent, "")
		s.notify.EphemeralToUser(ctx, uid.String(), &edgev1.Push{Unread: []*chatv1.UnreadChanged{{
			ConversationId: convID.String(), UnreadCount: res.UnreadCount, Badge: res.Badge}}}, sessionID(ctx))
		if members <= s.cfg.ReceiptPushLimit {
			s.notify.EphemeralToConversation(ctx, convID.String(), &edgev1.Push{ReadMarkers: []*chatv1.ReadMarker{marker}}, uid.String())
		}
	}
	return res, nil
}

// unread returns the caller's unread count in conv and total badge.
func (s *Service) unread(ctx context.Context, uid, convID uuid.UUID) (count, badge uint64, err error) {
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM members m JOIN events u ON u.conversation_id = m.conversation_id
		WHERE m.user_id = $1 AND m.conversation_id = $2 AND `+unreadFilter, uid, convID).Scan(&count); err != nil {
		return 0, 0, fmt.Errorf("unread: %w", err)
	}
	badge, err = s.badge(ctx, uid)
	return count, badge, err
}

// ListReadReceipts derives who has read a message from the members' read
// markers: a member has read seq once its marker reached it. The sender and
// members who joined after the message are left out.
func (s *Service) ListReadReceipts(ctx context.Context, req *chatv1.ListReadReceiptsRequest) (*chatv1.ListReadReceiptsResponse, error) {
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
	seq, err := seqArg("seq", req.GetSeq())
	if err != nil {
		return nil, err
	}
	sender, err := s.visibleMessageSender(ctx, convID, uid, seq)
	if err != nil {
		return nil, err
	}
	wantRead := req.GetFilter() != chatv1.ReadFilter_READ_FILTER_UNREAD
	const audience = `m.conversation_id = $1 AND m.left_seq IS NULL AND m.joined_seq < $2 AND m.user_id <> $3`
	res := &chatv1.ListReadReceiptsResponse{}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE m.read_seq >= $2), count(*) FILTER (WHERE m.read_seq < $2)
		FROM members m WHERE `+audience, convID, seq, sender).Scan(&res.ReadCount, &res.UnreadCount); err != nil {
		return nil, s.internal(ctx, "list read receipts", err)
	}
	rows, err := s.db.Query(ctx, `SELECT m.user_id, m.read_seq FROM members m WHERE `+audience+`
		AND (m.read_seq >= $2) = $4 AND m.user_id > $5 ORDER BY m.user_id LIMIT $6`, convID, seq, sender, wantRead, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list read receipts", err)
	}
	markers, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.ReadMarker, error) {
		var user uuid.UUID
		var read int64
		if err := r.Scan(&user, &read); err != nil {
			return nil, err
		}
		return &chatv1.ReadMarker{ConversationId: convID.String(), UserId: user.String(), ReadSeq: uint64(read)}, nil
	})
	if err != nil {
		return nil, s.internal(ctx, "list read receipts", err)
	}
	if len(markers) > size {
		markers = markers[:size]
		last := uuid.MustParse(markers[size-1].GetUserId())
		res.NextPageToken = encodeUserToken(last)
	}
	res.Markers = markers
	return res, nil
}

// visibleMessageSender returns the sender of the message at seq if the
// caller may see it; NotFound otherwise.
func (s *Service) visibleMessageSender(ctx context.Context, convID, uid uuid.UUID, seq int64) (uuid.UUID, error) {
	var sender uuid.UUID
	err := s.db.QueryRow(ctx, `SELECT e.actor_id FROM events e JOIN members m ON m.conversation_id = e.conversation_id AND m.user_id = $3
		WHERE e.conversation_id = $1 AND e.seq = $2 AND e.kind = 1 AND e.seq > m.joined_seq AND (m.left_seq IS NULL OR e.seq <= m.left_seq)`,
		convID, seq, uid).Scan(&sender)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no message at seq %d", seq))
	}
	if err != nil {
		return uuid.Nil, s.internal(ctx, "find message", err)
	}
	return sender, nil
}

// GetDeliveryState says which devices of each member acknowledged the
// message at seq, from the edges' delivery reports.
func (s *Service) GetDeliveryState(ctx context.Context, req *chatv1.GetDeliveryStateRequest) (*chatv1.GetDeliveryStateResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	convID, err := parseID("conversation_id", req.GetConversationId())
	if err != nil {
		return nil, err
	}
	seq, err := seqArg("seq", req.GetSeq())
	if err != nil {
		return nil, err
	}
	sender, err := s.visibleMessageSender(ctx, convID, uid, seq)
	if err != nil {
		return nil, err
	}
	res := &chatv1.GetDeliveryStateResponse{}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM members WHERE conversation_id = $1 AND left_seq IS NULL AND joined_seq < $2 AND user_id <> $3`,
		convID, seq, sender).Scan(&res.MemberCount); err != nil {
		return nil, s.internal(ctx, "get delivery state", err)
	}
	rows, err := s.db.Query(ctx, `SELECT d.user_id::text, array_agg(d.device_id::text ORDER BY d.device_id) FROM deliveries d
		JOIN members m ON m.conversation_id = d.conversation_id AND m.user_id = d.user_id AND m.left_seq IS NULL AND m.joined_seq < $2
		WHERE d.conversation_id = $1 AND d.delivered_seq >= $2 AND d.user_id <> $3
		GROUP BY d.user_id ORDER BY d.user_id LIMIT 10000`, convID, seq, sender)
	if err != nil {
		return nil, s.internal(ctx, "get delivery state", err)
	}
	res.Deliveries, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*chatv1.MemberDelivery, error) {
		d := &chatv1.MemberDelivery{}
		return d, r.Scan(&d.UserId, &d.DeliveredDeviceIds)
	})
	if err != nil {
		return nil, s.internal(ctx, "get delivery state", err)
	}
	res.DeliveredUserCount = uint32(len(res.Deliveries))
	return res, nil
}

// ReportDeliveries records the positions edges' sessions acknowledged; a
// position only moves forward.
func (s *Service) ReportDeliveries(ctx context.Context, req *chatv1.ReportDeliveriesRequest) (*chatv1.ReportDeliveriesResponse, error) {
	if n := len(req.GetAcks()); n > 5000 {
		return nil, invalid("at most 5000 acks per call, got %d", n)
	}
	convs := make([]uuid.UUID, 0, len(req.GetAcks()))
	users := make([]uuid.UUID, 0, len(req.GetAcks()))
	devices := make([]uuid.UUID, 0, len(req.GetAcks()))
	seqs := make([]int64, 0, len(req.GetAcks()))
	for i, a := range req.GetAcks() {
		conv, err1 := uuid.Parse(a.GetConversationId())
		user, err2 := uuid.Parse(a.GetUserId())
		device, err3 := uuid.Parse(a.GetDeviceId())
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, invalid("acks[%d]: %v", i, err)
		}
		seq, err := seqArg(fmt.Sprintf("acks[%d].seq", i), a.GetSeq())
		if err != nil {
			return nil, err
		}
		convs, users, devices, seqs = append(convs, conv), append(users, user), append(devices, device), append(seqs, seq)
	}
	// Only members' positions are kept; reports about conversations a device
	// cannot see are dropped by the join.
	if _, err := s.db.Exec(ctx, `
		INSERT INTO deliveries (conversation_id, user_id, device_id, delivered_seq)
		SELECT a.conv, a.usr, a.dev, max(a.seq) FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[]) AS a(conv, usr, dev, seq)
		JOIN members m ON m.conversation_id = a.conv AND m.user_id = a.usr
		GROUP BY a.conv, a.usr, a.dev
		ON CONFLICT (conversation_id, user_id, device_id) DO UPDATE
		SET delivered_seq = greatest(deliveries.delivered_seq, excluded.delivered_seq), update_time = now()`,
		convs, users, devices, seqs); err != nil {
		return nil, s.internal(ctx, "report deliveries", err)
	}
	return &chatv1.ReportDeliveriesResponse{}, nil
}
