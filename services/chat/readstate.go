package chat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
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
	err = s.store.InTx(ctx, func(tx Tx) error {
		st, err := tx.LockReadState(ctx, convID, uid)
		if err != nil {
			return err
		}
		before, members, at = st.ReadSeq, st.MemberCount, st.Now
		readSeq = min(seq, st.LastSeq)
		if readSeq <= before {
			readSeq = before // markers never move back
			return nil
		}
		if err := tx.SetReadSeq(ctx, convID, uid, readSeq); err != nil {
			return err
		}
		userEvent, err = tx.AppendUserEvent(ctx, uid, &chatv1.UserEvent{Kind: &chatv1.UserEvent_ReadMarker{ReadMarker: &chatv1.ReadMarker{
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
	if count, err = s.store.Unread(ctx, uid, convID); err != nil {
		return 0, 0, err
	}
	badge, err = s.store.Badge(ctx, uid)
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
	page, err := s.store.ReadReceipts(ctx, convID, seq, sender, wantRead, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list read receipts", err)
	}
	res := &chatv1.ListReadReceiptsResponse{ReadCount: page.Read, UnreadCount: page.Unread}
	markers := page.Markers
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
	sender, err := s.store.MessageSender(ctx, convID, uid, seq)
	if err != nil {
		return uuid.Nil, s.internal(ctx, "find message", notFound(err, "no message at seq %d", seq))
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
	res.MemberCount, res.Deliveries, err = s.store.DeliveryState(ctx, convID, seq, sender)
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
	ds := make([]Delivery, 0, len(req.GetAcks()))
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
		ds = append(ds, Delivery{Conv: conv, User: user, Device: device, Seq: seq})
	}
	if err := s.store.ReportDeliveries(ctx, ds); err != nil {
		return nil, s.internal(ctx, "report deliveries", err)
	}
	return &chatv1.ReportDeliveriesResponse{}, nil
}
