package chat

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
	res := &chatv1.ListRoutesResponse{}
	byUser := map[string]*chatv1.UserRoutes{}
	rows, err := s.db.Query(ctx, `
		SELECT u.id::text, coalesce(us.last_seq, 0), m.conversation_id::text, m.joined_seq, c.last_seq
		FROM users u
		LEFT JOIN user_streams us ON us.user_id = u.id
		LEFT JOIN (members m JOIN conversations c ON c.id = m.conversation_id AND c.type = 2)
			ON m.user_id = u.id AND m.left_seq IS NULL
		WHERE u.id = ANY($1::uuid[])`, users)
	if err != nil {
		return nil, s.internal(ctx, "list routes", err)
	}
	var user, conv *string
	var userSeq int64
	var joined, last *int64
	if _, err := pgx.ForEachRow(rows, []any{&user, &userSeq, &conv, &joined, &last}, func() error {
		r := byUser[*user]
		if r == nil {
			r = &chatv1.UserRoutes{UserId: *user, UserSeq: uint64(userSeq)}
			byUser[*user] = r
			res.Users = append(res.Users, r)
		}
		if conv != nil {
			r.Groups = append(r.Groups, &chatv1.GroupMembership{ConversationId: *conv, JoinedSeq: uint64(*joined), LastSeq: uint64(*last)})
		}
		return nil
	}); err != nil {
		return nil, s.internal(ctx, "list routes", err)
	}
	return res, nil
}

// ReadEvents reads the requested ranges, in order, within one answer's
// budget; ranges cut short say more.
func (s *Service) ReadEvents(ctx context.Context, req *chatv1.ReadEventsRequest) (*chatv1.ReadEventsResponse, error) {
	convs, users := req.GetConversations(), req.GetUsers()
	if n := len(convs) + len(users); n > maxReadRanges {
		return nil, invalid("at most %d ranges per call, got %d", maxReadRanges, n)
	}
	type parsed struct {
		id       uuid.UUID
		from, to int64
	}
	parse := func(list string, rs []*chatv1.StreamRange) ([]parsed, error) {
		out := make([]parsed, len(rs))
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
			out[i] = parsed{id, from, to}
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
	batch := &pgx.Batch{}
	for _, r := range cs {
		batch.Queue(`SELECT `+eventColumns+` FROM events e WHERE e.conversation_id = $1 AND e.seq >= $2
			AND ($3 = 0 OR e.seq <= $3) ORDER BY e.seq LIMIT $4`, r.id, r.from, r.to, per+1)
	}
	for _, r := range us {
		batch.Queue(`SELECT seq, create_time, body FROM user_events WHERE user_id = $1 AND seq >= $2
			AND ($3 = 0 OR seq <= $3) ORDER BY seq LIMIT $4`, r.id, r.from, r.to, per+1)
	}
	res := &chatv1.ReadEventsResponse{}
	budget := readBudget
	br := s.db.SendBatch(ctx, batch)
	defer br.Close()
	for _, r := range cs {
		var row eventRow
		evs, more, err := readRange(br, row.fields(), row.event, per, &budget)
		if err != nil {
			return nil, s.internal(ctx, "read events", err)
		}
		res.Conversations = append(res.Conversations, &chatv1.ConversationEvents{ConversationId: r.id.String(), Events: evs, More: more})
	}
	for _, r := range us {
		var seq int64
		var at time.Time
		var body []byte
		evs, more, err := readRange(br, []any{&seq, &at, &body}, func() (*chatv1.UserEvent, error) {
			return decodeUserEvent(r.id, seq, at, body)
		}, per, &budget)
		if err != nil {
			return nil, s.internal(ctx, "read events", err)
		}
		res.Users = append(res.Users, &chatv1.UserEvents{UserId: r.id.String(), Events: evs, More: more})
	}
	return res, nil
}

// readRange takes the batch's next query's rows into at most per events,
// within what is left of the answer's byte budget; more says some were
// left out.
func readRange[E proto.Message](br pgx.BatchResults, scans []any, decode func() (E, error), per int, budget *int) ([]E, bool, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, false, err
	}
	var out []E
	more := false
	_, err = pgx.ForEachRow(rows, scans, func() error {
		if len(out) == per || *budget <= 0 {
			more = true
			return nil
		}
		ev, err := decode()
		if err != nil {
			return err
		}
		*budget -= proto.Size(ev)
		out = append(out, ev)
		return nil
	})
	return out, more, err
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
	rows, err := s.db.Query(ctx, `SELECT m.user_id::text, c.id::text, c.last_seq FROM members m
		JOIN conversations c ON c.id = m.conversation_id
		WHERE m.user_id = ANY($1::uuid[]) AND c.type = 1 AND c.update_time >= $2`, users, req.GetSince().AsTime())
	if err != nil {
		return nil, s.internal(ctx, "list direct changes", err)
	}
	res := &chatv1.ListDirectChangesResponse{}
	var user, conv string
	var last int64
	if _, err := pgx.ForEachRow(rows, []any{&user, &conv, &last}, func() error {
		res.Changes = append(res.Changes, &chatv1.DirectChange{UserId: user, ConversationId: conv, LastSeq: uint64(last)})
		return nil
	}); err != nil {
		return nil, s.internal(ctx, "list direct changes", err)
	}
	return res, nil
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
