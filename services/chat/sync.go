package chat

import (
	"context"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// Sync finds what a device lacks through the Store: the cursor and the
// watermark that makes it exact are the store's (Store.Sync); the service
// decodes the events, bounds a page's bytes and shows former members their
// conversations as they were when they left.

// maxSyncPageBytes bounds a page's encoded events, well under the 4 MiB
// that gRPC clients accept by default.
const maxSyncPageBytes = 2 << 20

// Sync returns one page of the events the device lacks across all of the
// user's conversations, grouped by conversation in seq order.
func (s *Service) Sync(ctx context.Context, req *chatv1.SyncRequest) (*chatv1.SyncResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize(), 500, 2000)
	if err != nil {
		return nil, err
	}
	if len(req.GetKnownPositions()) > 10_000 {
		return nil, invalid("at most 10000 known_positions")
	}
	known := make(map[uuid.UUID]int64, len(req.GetKnownPositions()))
	for _, p := range req.GetKnownPositions() {
		id, err := parseID("known_positions.conversation_id", p.GetConversationId())
		if err != nil {
			return nil, err
		}
		seq, err := seqArg("known_positions.seq", p.GetSeq())
		if err != nil {
			return nil, err
		}
		known[id] = max(known[id], seq)
	}
	var (
		events     []*chatv1.Event
		userEvents []*chatv1.UserEvent
		bytes      int
	)
	formerMessages := map[uuid.UUID]*formerRows{} // rewound once the page is read
	next, more, err := s.store.Sync(ctx, uid, req.GetCursor(), known, size, SyncPage{
		Event: func(r EventRow, left *int64) (bool, error) {
			ev, err := decodeEvent(r)
			if err != nil {
				return false, err
			}
			if bytes += proto.Size(ev); bytes > maxSyncPageBytes && len(events) > 0 {
				return false, nil
			}
			if left != nil && (r.Kind == KindMessage || r.Kind == KindMessageEdited) {
				f := formerMessages[r.Conv]
				if f == nil {
					f = &formerRows{left: *left}
					formerMessages[r.Conv] = f
				}
				f.at, f.rows = append(f.at, len(events)), append(f.rows, r)
			}
			events = append(events, ev)
			return true, nil
		},
		// User events share the page's byte budget; the rest come next page.
		UserEvent: func(ev *chatv1.UserEvent) bool {
			if bytes += proto.Size(ev); bytes > maxSyncPageBytes && (len(userEvents) > 0 || len(events) > 0) {
				return false
			}
			userEvents = append(userEvents, ev)
			return true
		},
	})
	if err != nil {
		return nil, s.internal(ctx, "sync", err)
	}
	for conv, f := range formerMessages {
		if err := s.rewind(ctx, conv, f.left, f.rows); err != nil {
			return nil, s.internal(ctx, "sync", err)
		}
		for i, at := range f.at {
			if events[at], err = decodeEvent(f.rows[i]); err != nil {
				return nil, s.internal(ctx, "sync", err)
			}
		}
	}
	return &chatv1.SyncResponse{Events: events, UserEvents: userEvents, HasMore: more, NextCursor: next}, nil
}
