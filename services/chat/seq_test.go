package chat_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// Every seq a request carries is refused above 2^63-1 rather than wrapped
// to a negative position.
func TestSeqsAboveInt64AreRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		alice, aliceID := f.user("alice")
		_, bobID := f.user("bob")
		conv := f.group(alice, bobID)
		f.send(alice, conv, "hello")

		for _, seq := range []uint64{math.MaxInt64 + 1, math.MaxUint64} {
			calls := []struct {
				field string
				call  func(context.Context) error
			}{
				{"start_seq", func(ctx context.Context) error {
					_, err := f.svc.ListMessages(ctx, &chatv1.ListMessagesRequest{ConversationId: conv, StartSeq: seq,
						Direction: chatv1.Direction_DIRECTION_FORWARD})
					return err
				}},
				{"seq", func(ctx context.Context) error {
					_, err := f.svc.MarkRead(ctx, &chatv1.MarkReadRequest{ConversationId: conv, Seq: seq})
					return err
				}},
				{"seq", func(ctx context.Context) error {
					_, err := f.svc.ListReadReceipts(ctx, &chatv1.ListReadReceiptsRequest{ConversationId: conv, Seq: seq})
					return err
				}},
				{"seq", func(ctx context.Context) error {
					_, err := f.svc.GetDeliveryState(ctx, &chatv1.GetDeliveryStateRequest{ConversationId: conv, Seq: seq})
					return err
				}},
				{"acks[0].seq", func(ctx context.Context) error {
					_, err := f.svc.ReportDeliveries(ctx, &chatv1.ReportDeliveriesRequest{Acks: []*chatv1.DeliveryAck{{
						UserId: aliceID, DeviceId: uuid.NewString(), ConversationId: conv, Seq: seq}}})
					return err
				}},
				{"known_positions.seq", func(ctx context.Context) error {
					_, err := f.svc.Sync(ctx, &chatv1.SyncRequest{KnownPositions: []*chatv1.ConversationPosition{{ConversationId: conv, Seq: seq}}})
					return err
				}},
				{"conversations[0].from_seq", func(ctx context.Context) error {
					_, err := f.svc.ReadEvents(ctx, &chatv1.ReadEventsRequest{Conversations: []*chatv1.StreamRange{{Id: conv, FromSeq: seq}}})
					return err
				}},
				{"conversations[0].to_seq", func(ctx context.Context) error {
					_, err := f.svc.ReadEvents(ctx, &chatv1.ReadEventsRequest{Conversations: []*chatv1.StreamRange{{Id: conv, FromSeq: 1, ToSeq: seq}}})
					return err
				}},
				{"users[0].from_seq", func(ctx context.Context) error {
					_, err := f.svc.ReadEvents(ctx, &chatv1.ReadEventsRequest{Users: []*chatv1.StreamRange{{Id: aliceID, FromSeq: seq}}})
					return err
				}},
			}
			for _, c := range calls {
				err := c.call(alice)
				wantCode(t, err, connect.CodeInvalidArgument)
				want := c.field + " " + fmt.Sprint(seq) + " is out of range (at most 9223372036854775807)"
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s = %d: %v, want %q", c.field, seq, err, want)
				}
			}
		}
	})
}
