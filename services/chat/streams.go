package chat

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// The DeliveryService calls edges make to route and repair their bus
// topics (internal only). Edges decide who sees what from membership
// events, so these read streams whole.

const (
	maxRouteUsers  = 1000
	maxReadRanges  = 1000
	maxDirectUsers = 10_000
	// readBudget bounds one ReadEvents answer, under grpc-go's default
	// 4 MiB receive limit; events beyond it come with more = true.
	readBudget       = 2 << 20
	readBudgetEvents = 2000
	maxEventsPerRead = 500
)

// ListRoutes reads, in one snapshot, each user's group memberships with the
// groups' last seqs and the user's last user event.
func (s *Service) ListRoutes(ctx context.Context, req *chatv1.ListRoutesRequest) (*chatv1.ListRoutesResponse, error) {
	users, err := uuidList("user_ids", req.GetUserIds(), maxRouteUsers)
	if err != nil {
		return nil, err
	}
	routes, err := s.store.ListRoutes(ctx, users)
	if err != nil {
		return nil, s.internal(ctx, "list routes", err)
	}
	return &chatv1.ListRoutesResponse{Users: routes}, nil
}

// ReadEvents reads the requested ranges, in order, within one answer's
// budget; ranges cut short say more.
func (s *Service) ReadEvents(ctx context.Context, req *chatv1.ReadEventsRequest) (*chatv1.ReadEventsResponse, error) {
	convs, users := req.GetConversations(), req.GetUsers()
	if n := len(convs) + len(users); n > maxReadRanges {
		return nil, invalid("at most %d ranges per call, got %d", maxReadRanges, n)
	}
	parse := func(list string, rs []*chatv1.StreamRange) ([]Range, error) {
		out := make([]Range, len(rs))
		for i, r := range rs {
			id, err := parseID(list+".id", r.GetId())
			if err != nil {
				return nil, err
			}
			from, err := seqArg(fmt.Sprintf("%s[%d].from_seq", list, i), r.GetFromSeq())
			if err != nil {
				return nil, err
			}
			to, err := seqArg(fmt.Sprintf("%s[%d].to_seq", list, i), r.GetToSeq())
			if err != nil {
				return nil, err
			}
			if from == 0 || (to != 0 && to < from) {
				return nil, invalid("%s[%d]: from_seq must be at least 1 and at most to_seq", list, i)
			}
			out[i] = Range{ID: id, From: from, To: to}
		}
		return out, nil
	}
	cs, err := parse("conversations", convs)
	if err != nil {
		return nil, err
	}
	us, err := parse("users", users)
	if err != nil {
		return nil, err
	}
	// Each range gets a fair share of the event budget; one batch, one
	// round trip.
	per := min(maxEventsPerRead, max(10, readBudgetEvents/max(1, len(cs)+len(us))))
	convEvents, userEvents, err := s.store.ReadEvents(ctx, cs, us, per+1)
	if err != nil {
		return nil, s.internal(ctx, "read events", err)
	}
	res := &chatv1.ReadEventsResponse{}
	budget := readBudget
	for i, r := range cs {
		evs, more, err := readRange(convEvents[i], decodeEvent, per, &budget)
		if err != nil {
			return nil, s.internal(ctx, "read events", err)
		}
		res.Conversations = append(res.Conversations, &chatv1.ConversationEvents{ConversationId: r.ID.String(), Events: evs, More: more})
	}
	for i, r := range us {
		evs, more, _ := readRange(userEvents[i], func(ev *chatv1.UserEvent) (*chatv1.UserEvent, error) { return ev, nil }, per, &budget)
		res.Users = append(res.Users, &chatv1.UserEvents{UserId: r.ID.String(), Events: evs, More: more})
	}
	return res, nil
}

// readRange takes a range's rows into at most per events, within what is
// left of the answer's byte budget; more says some were left out.
func readRange[R any, E proto.Message](rows []R, decode func(R) (E, error), per int, budget *int) ([]E, bool, error) {
	var out []E
	for _, r := range rows {
		if len(out) == per || *budget <= 0 {
			return out, true, nil
		}
		ev, err := decode(r)
		if err != nil {
			return nil, false, err
		}
		*budget -= proto.Size(ev)
		out = append(out, ev)
	}
	return out, false, nil
}

// ListDirectChanges lists the users' direct conversations with an event at
// or after since.
func (s *Service) ListDirectChanges(ctx context.Context, req *chatv1.ListDirectChangesRequest) (*chatv1.ListDirectChangesResponse, error) {
	users, err := uuidList("user_ids", req.GetUserIds(), maxDirectUsers)
	if err != nil {
		return nil, err
	}
	if req.GetSince() == nil {
		return nil, invalid("since is required")
	}
	changes, err := s.store.DirectChanges(ctx, users, req.GetSince().AsTime())
	if err != nil {
		return nil, s.internal(ctx, "list direct changes", err)
	}
	return &chatv1.ListDirectChangesResponse{Changes: changes}, nil
}

// uuidList parses a list of ids of at most max entries.
func uuidList(field string, raw []string, max int) ([]uuid.UUID, error) {
	if len(raw) > max {
		return nil, invalid("at most %d %s, got %d", max, field, len(raw))
	}
	out := make([]uuid.UUID, len(raw))
	for i, r := range raw {
		id, err := parseID(field, r)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}
