package fanout_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/services/chat"
	"github.com/wagglechat/waggle/services/fanout"
)

// routes answers the fanout's route reads from a table; the fanout reads
// nothing else without offline pushes or a start-up republish.
type routes struct {
	chat.FanoutStore
	direct map[uuid.UUID][2]uuid.UUID // conversation -> its two users
	groups map[uuid.UUID]bool
}

func (r routes) Route(_ context.Context, conv uuid.UUID) (bool, [2]uuid.UUID, error) {
	if pair, ok := r.direct[conv]; ok {
		return true, pair, nil
	}
	if r.groups[conv] {
		return false, [2]uuid.UUID{}, nil
	}
	return false, [2]uuid.UUID{}, chat.ErrNotFound
}

// published is one envelope on one channel.
type published struct {
	channel string
	env     *busv1.Envelope
}

func (p published) String() string { return fmt.Sprintf("%s %v", p.channel, p.env) }

// publisher hands what the fanout publishes to the test.
type publisher chan bus.Message

func (p publisher) PublishBatch(_ context.Context, msgs []bus.Message) error {
	for _, m := range msgs {
		p <- m
	}
	return nil
}

// Each notice of the chat service becomes the envelope edges expect, on
// the channels of those it is for.
func TestEachNoticeBecomesItsEnvelope(t *testing.T) {
	alice, bob, carol := uuid.New(), uuid.New(), uuid.New()
	group, direct, gone := uuid.New(), uuid.New(), uuid.New()
	store := routes{direct: map[uuid.UUID][2]uuid.UUID{direct: {alice, bob}}, groups: map[uuid.UUID]bool{group: true}}
	at := timestamppb.New(time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC))
	marker := func(conv uuid.UUID) *chatv1.ReadMarker {
		return &chatv1.ReadMarker{ConversationId: conv.String(), UserId: alice.String(), ReadSeq: 7, UpdateTime: at}
	}
	message := &chatv1.Event{ConversationId: group.String(), Seq: 7, ActorUserId: alice.String(),
		Kind: &chatv1.Event_Message{Message: &chatv1.Message{ConversationId: group.String(), Seq: 7, SenderUserId: alice.String()}}}
	added := &chatv1.Event{ConversationId: group.String(), Seq: 8, ActorUserId: alice.String(),
		Kind: &chatv1.Event_MembersAdded{MembersAdded: &chatv1.MembersAdded{UserIds: []string{bob.String(), carol.String()}}}}
	directEvent := &chatv1.Event{ConversationId: direct.String(), Seq: 3, ActorUserId: bob.String()}
	userEvent := &chatv1.UserEvent{Seq: 4, Kind: &chatv1.UserEvent_ReadMarker{ReadMarker: marker(group)}}

	tests := []struct {
		name   string
		notify func(context.Context, *fanout.Fanout)
		want   []published
	}{{
		name: "typing in a group: the group's channel, but the typer",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyEphemeral(ctx, chat.Typing{Conversation: group.String(), User: alice.String(), Typing: true})
		},
		want: []published{{bus.ConversationChannel(group.String()), &busv1.Envelope{
			Push:           &edgev1.Push{Typing: []*chatv1.TypingEvent{{ConversationId: group.String(), UserId: alice.String(), Typing: true}}},
			ExcludeUserIds: []string{alice.String()}}}},
	}, {
		name: "typing stopped in a direct conversation: the other user's channel",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyEphemeral(ctx, chat.Typing{Conversation: direct.String(), User: alice.String()})
		},
		want: []published{{bus.UserChannel(bob.String()), &busv1.Envelope{
			Push: &edgev1.Push{Typing: []*chatv1.TypingEvent{{ConversationId: direct.String(), UserId: alice.String()}}}}}},
	}, {
		name: "read marker in a group: the group's channel, but the reader",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyEphemeral(ctx, chat.ReadMarkerMoved{Marker: marker(group)})
		},
		want: []published{{bus.ConversationChannel(group.String()), &busv1.Envelope{
			Push: &edgev1.Push{ReadMarkers: []*chatv1.ReadMarker{marker(group)}}, ExcludeUserIds: []string{alice.String()}}}},
	}, {
		name: "read marker in a direct conversation: the other user's channel",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyEphemeral(ctx, chat.ReadMarkerMoved{Marker: marker(direct)})
		},
		want: []published{{bus.UserChannel(bob.String()), &busv1.Envelope{
			Push: &edgev1.Push{ReadMarkers: []*chatv1.ReadMarker{marker(direct)}}}}},
	}, {
		name: "unread count: the user's channel, but the session that read",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyEphemeral(ctx, chat.UnreadChanged{User: alice.String(), Conversation: group.String(), Unread: 2, Badge: 5, SenderSession: "s1"})
		},
		want: []published{{bus.UserChannel(alice.String()), &busv1.Envelope{
			Push:              &edgev1.Push{Unread: []*chatv1.UnreadChanged{{ConversationId: group.String(), UnreadCount: 2, Badge: 5}}},
			ExcludeSessionIds: []string{"s1"}}}},
	}, {
		name: "unread count with no session: all the user's sessions",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyEphemeral(ctx, chat.UnreadChanged{User: alice.String(), Conversation: group.String()})
		},
		want: []published{{bus.UserChannel(alice.String()), &busv1.Envelope{
			Push: &edgev1.Push{Unread: []*chatv1.UnreadChanged{{ConversationId: group.String()}}}}}},
	}, {
		name: "a conversation with no route: nothing",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyEphemeral(ctx, chat.Typing{Conversation: gone.String(), User: alice.String(), Typing: true})
		},
	}, {
		name: "a message in a group: the group's channel, but the sending session",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.Notify(ctx, chat.Committed{Event: message, SenderSessionID: "s1"})
		},
		want: []published{{bus.ConversationChannel(group.String()), &busv1.Envelope{
			Push: &edgev1.Push{Events: []*chatv1.Event{message}}, ExcludeSessionIds: []string{"s1"}}}},
	}, {
		name: "members added: the group's channel and the new members' channels",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.Notify(ctx, chat.Committed{Event: added})
		},
		want: []published{
			{bus.ConversationChannel(group.String()), &busv1.Envelope{Push: &edgev1.Push{Events: []*chatv1.Event{added}}}},
			{bus.UserChannel(bob.String()), &busv1.Envelope{Push: &edgev1.Push{Events: []*chatv1.Event{added}}}},
			{bus.UserChannel(carol.String()), &busv1.Envelope{Push: &edgev1.Push{Events: []*chatv1.Event{added}}}},
		},
	}, {
		name: "an event of a direct conversation: both users' channels",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.Notify(ctx, chat.Committed{Event: directEvent})
		},
		want: []published{
			{bus.UserChannel(alice.String()), &busv1.Envelope{Push: &edgev1.Push{Events: []*chatv1.Event{directEvent}}}},
			{bus.UserChannel(bob.String()), &busv1.Envelope{Push: &edgev1.Push{Events: []*chatv1.Event{directEvent}}}},
		},
	}, {
		name: "a user event: the user's channel, but the session that caused it",
		notify: func(ctx context.Context, f *fanout.Fanout) {
			f.NotifyUser(ctx, alice.String(), userEvent, "s1")
		},
		want: []published{{bus.UserChannel(alice.String()), &busv1.Envelope{
			Push: &edgev1.Push{UserEvents: []*chatv1.UserEvent{userEvent}}, ExcludeSessionIds: []string{"s1"}}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := make(publisher, 100)
			f := fanout.New(fanout.Config{RepublishWindow: -1, PublishWait: 5 * time.Second}, store, nil, pub,
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { f.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			tt.notify(ctx, f)
			// The queue keeps its order: once this user event is out,
			// everything notified before it is too.
			end := uuid.NewString()
			f.NotifyUser(ctx, end, &chatv1.UserEvent{}, "")
			var got []published
			for {
				var m bus.Message
				select {
				case m = <-pub:
				case <-time.After(5 * time.Second):
					t.Fatalf("the end marker was never published; before it: %v", got)
				}
				if m.Channel == bus.UserChannel(end) {
					break
				}
				env := &busv1.Envelope{}
				if err := proto.Unmarshal(m.Payload, env); err != nil {
					t.Fatal(err)
				}
				got = append(got, published{m.Channel, env})
			}
			if len(got) != len(tt.want) {
				t.Fatalf("published %v, want %v", got, tt.want)
			}
			for i, w := range tt.want {
				if got[i].channel != w.channel || !proto.Equal(got[i].env, w.env) {
					t.Errorf("publication %d: %s %v, want %s %v", i, got[i].channel, got[i].env, w.channel, w.env)
				}
			}
		})
	}
}
