package edge

import (
	"testing"

	"google.golang.org/protobuf/proto"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

func TestPushFrameIsTheMergedPush(t *testing.T) {
	parts := []*edgev1.Push{
		messagePush("c1", 4),
		{Typing: []*chatv1.TypingEvent{{ConversationId: "c1", UserId: "u2", Typing: true}}},
		messagePush("c1", 5, 6),
		{UserEvents: []*chatv1.UserEvent{{Seq: 9}}, Presence: []*presencev1.UserPresence{{UserId: "u3"}}},
	}
	tests := []struct {
		name string
		id   uint64
	}{{"with an id", 1<<40 + 3}, {"without an id", 0}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pending []pendingPush
			want := &edgev1.Push{PushId: tt.id}
			for _, p := range parts {
				pp, err := newPendingPush(p)
				if err != nil {
					t.Fatal(err)
				}
				pending = append(pending, pp)
				proto.Merge(want, p)
			}
			raw, err := proto.Marshal(&edgev1.ConnectResponse{Frame: new(frameBuf).assemble(tt.id, pending)})
			if err != nil {
				t.Fatal(err)
			}
			got := &edgev1.ConnectResponse{}
			if err := proto.Unmarshal(raw, got); err != nil {
				t.Fatal(err)
			}
			if w := (&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Push{Push: want}}); !proto.Equal(w, got.GetFrame()) {
				t.Fatalf("decoded frame %v, want the merged push %v", got.GetFrame(), w)
			}
			m, err := materialize(new(frameBuf).assemble(tt.id, pending))
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, got.GetFrame()) || len(m.ProtoReflect().GetUnknown()) != 0 {
				t.Fatalf("materialized %v, want the decoded frame with no unknown fields", m)
			}
		})
	}
}

func TestPendingPushNamesItsHighestEvent(t *testing.T) {
	pp, err := newPendingPush(messagePush("c1", 3, 5, 4))
	if err != nil {
		t.Fatal(err)
	}
	if pp.conv != "c1" || pp.seq != 5 || !pp.durable {
		t.Fatalf("got %q/%d durable %v, want c1/5 durable", pp.conv, pp.seq, pp.durable)
	}
	typing, _ := newPendingPush(&edgev1.Push{Typing: []*chatv1.TypingEvent{{}}})
	if typing.durable || typing.conv != "" {
		t.Fatalf("typing push %+v, want not durable and no position", typing)
	}
}
