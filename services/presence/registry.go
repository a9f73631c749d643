// Package presence knows which users are online and where: the internal
// SessionRegistryService, where edges register the sessions they hold, and
// the public PresenceService, which tells apps who is online.
//
// Sessions live in Redis with a TTL that edges renew in batches, so the
// sessions of an edge that dies expire on their own. See store.go for the
// key layout.
package presence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
)

const (
	// DefaultSessionTTL is how long a session lives unrenewed unless
	// configured otherwise. Edges should renew every third of the TTL.
	DefaultSessionTTL = 60 * time.Second
	// MaxSessionsPerCall bounds Register, Renew and UnregisterSessions;
	// edges holding more sessions split them into several calls.
	MaxSessionsPerCall = 10000
	// MaxLookupUsers bounds LookupSessions.
	MaxLookupUsers = 10000
)

// RegistryConfig tunes [NewRegistry]. The zero value is usable.
type RegistryConfig struct {
	// SessionTTL is how long a session stays live without renewal.
	// Zero (or negative) means DefaultSessionTTL.
	SessionTTL time.Duration
	// OnChange is called when a user goes online (their first live session
	// was registered) or offline (their last one was unregistered, or was
	// found expired; at is then the last time they were known connected).
	// Each transition is detected atomically in Redis and reported once.
	// It runs in the request's goroutine after the write and must be fast;
	// calls for one user from concurrent requests may arrive out of order,
	// so order them by at. Zero: transitions are not reported.
	OnChange func(userID string, online bool, at time.Time)
	// Now is the clock for session expiry. Zero means time.Now.
	Now func() time.Time
}

// Registry implements the SessionRegistryService over Redis.
type Registry struct {
	client   *redis.Client
	prefix   string
	log      *slog.Logger
	ttl      time.Duration
	onChange func(userID string, online bool, at time.Time)
	now      func() time.Time
}

var _ presencev1connect.SessionRegistryServiceHandler = (*Registry)(nil)

// NewRegistry returns a registry keeping its keys under prefix in client.
// A nil logger discards logs.
func NewRegistry(client *redis.Client, prefix string, logger *slog.Logger, cfg RegistryConfig) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{
		client:   client,
		prefix:   prefix,
		log:      logger,
		ttl:      cfg.SessionTTL,
		onChange: cfg.OnChange,
		now:      cfg.Now,
	}
	if r.ttl <= 0 {
		r.ttl = DefaultSessionTTL
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// RegisterSessions records new sessions. A missing login_time is taken as now.
func (r *Registry) RegisterSessions(ctx context.Context, req *presencev1.RegisterSessionsRequest) (*presencev1.RegisterSessionsResponse, error) {
	if err := checkSessions(req.GetSessions(), ""); err != nil {
		return nil, err
	}
	if _, err := r.write(ctx, req.GetSessions(), ""); err != nil {
		return nil, storeError(ctx, "register sessions", err)
	}
	return &presencev1.RegisterSessionsResponse{}, nil
}

// RenewSessions extends the TTL of one edge's sessions in one round trip.
// Sessions may leave edge_id empty; the request's applies. Sessions the
// registry had lost are registered again and counted in restored.
func (r *Registry) RenewSessions(ctx context.Context, req *presencev1.RenewSessionsRequest) (*presencev1.RenewSessionsResponse, error) {
	if err := checkID("edge_id", req.GetEdgeId()); err != nil {
		return nil, err
	}
	if err := checkSessions(req.GetSessions(), req.GetEdgeId()); err != nil {
		return nil, err
	}
	restored, err := r.write(ctx, req.GetSessions(), req.GetEdgeId())
	if err != nil {
		return nil, storeError(ctx, "renew sessions", err)
	}
	return &presencev1.RenewSessionsResponse{Restored: uint32(restored)}, nil
}

// UnregisterSessions removes sessions; only session_id and user_id are used.
// Removing an unknown session is not an error.
func (r *Registry) UnregisterSessions(ctx context.Context, req *presencev1.UnregisterSessionsRequest) (*presencev1.UnregisterSessionsResponse, error) {
	sessions := req.GetSessions()
	if len(sessions) > MaxSessionsPerCall {
		return nil, invalidArgument("at most %d sessions per call, got %d", MaxSessionsPerCall, len(sessions))
	}
	for i, s := range sessions {
		if err := checkID(fmt.Sprintf("sessions[%d].session_id", i), s.GetSessionId()); err != nil {
			return nil, err
		}
		if err := checkID(fmt.Sprintf("sessions[%d].user_id", i), s.GetUserId()); err != nil {
			return nil, err
		}
	}
	if len(sessions) == 0 {
		return &presencev1.UnregisterSessionsResponse{}, nil
	}
	now := r.now()
	calls := groupByUser(sessions, func() []any {
		return []any{now.UnixMilli(), r.ttl.Milliseconds()}
	}, func(i int) []any {
		return []any{sessions[i].GetSessionId()}
	})
	ts, err := r.runScripts(ctx, unregisterScript, calls)
	if err != nil {
		return nil, storeError(ctx, "unregister sessions", err)
	}
	r.report(ts, now)
	return &presencev1.UnregisterSessionsResponse{}, nil
}

// LookupSessions returns the live sessions of up to MaxLookupUsers users in
// one round trip, grouped by user in request order, oldest login first.
func (r *Registry) LookupSessions(ctx context.Context, req *presencev1.LookupSessionsRequest) (*presencev1.LookupSessionsResponse, error) {
	ids, err := checkUserIDs(req.GetUserIds(), MaxLookupUsers)
	if err != nil {
		return nil, err
	}
	res := &presencev1.LookupSessionsResponse{}
	if len(ids) == 0 {
		return res, nil
	}
	states, err := r.load(ctx, ids, false)
	if err != nil {
		return nil, storeError(ctx, "lookup sessions", err)
	}
	for _, st := range states {
		res.Sessions = append(res.Sessions, st.sessions...)
	}
	return res, nil
}

// checkSessions validates sessions to register or renew. For a renewal,
// edgeID is the request's edge, which each session must match or omit.
func checkSessions(sessions []*presencev1.Session, edgeID string) error {
	if len(sessions) > MaxSessionsPerCall {
		return invalidArgument("at most %d sessions per call, got %d", MaxSessionsPerCall, len(sessions))
	}
	first := make(map[string]int, len(sessions))
	for i, s := range sessions {
		field := func(name string) string { return fmt.Sprintf("sessions[%d].%s", i, name) }
		if err := checkID(field("session_id"), s.GetSessionId()); err != nil {
			return err
		}
		if j, dup := first[s.GetSessionId()]; dup {
			return invalidArgument("%s repeats sessions[%d]", field("session_id"), j)
		}
		first[s.GetSessionId()] = i
		if err := checkID(field("user_id"), s.GetUserId()); err != nil {
			return err
		}
		if err := checkID(field("device_id"), s.GetDeviceId()); err != nil {
			return err
		}
		switch {
		case edgeID == "":
			if err := checkID(field("edge_id"), s.GetEdgeId()); err != nil {
				return err
			}
		case s.GetEdgeId() != "" && s.GetEdgeId() != edgeID:
			return invalidArgument("%s is %q, not the renewing edge %q", field("edge_id"), s.GetEdgeId(), edgeID)
		}
	}
	return nil
}

// write registers or renews sessions (on edgeID, if set), one script run per
// user in one round trip, and returns how many were not live before.
func (r *Registry) write(ctx context.Context, sessions []*presencev1.Session, edgeID string) (int, error) {
	if len(sessions) == 0 {
		return 0, nil
	}
	now := r.now()
	expiry := now.Add(r.ttl)
	vals := make([][]byte, len(sessions))
	for i, s := range sessions {
		stored := &presencev1.Session{
			DeviceId:  s.GetDeviceId(),
			EdgeId:    cmp.Or(s.GetEdgeId(), edgeID),
			LoginTime: s.GetLoginTime(),
		}
		if stored.LoginTime == nil {
			stored.LoginTime = timestamppb.New(now)
		}
		var err error
		if vals[i], err = encodeSession(stored, expiry); err != nil {
			return 0, fmt.Errorf("encode session %s: %w", s.GetSessionId(), err)
		}
	}
	calls := groupByUser(sessions, func() []any {
		return []any{now.UnixMilli(), r.ttl.Milliseconds()}
	}, func(i int) []any {
		return []any{sessions[i].GetSessionId(), vals[i]}
	})
	// The expiry index lets Sweep find users whose edge died.
	members := make([]redis.Z, len(calls))
	for i, c := range calls {
		members[i] = redis.Z{Score: float64(expiry.UnixMilli()), Member: c.userID}
	}
	ts, err := r.runScripts(ctx, writeScript, calls, func(p redis.Pipeliner) { p.ZAddGT(ctx, r.expiryKey(), members...) })
	if err != nil {
		return 0, err
	}
	r.report(ts, now)
	restored := 0
	for _, t := range ts {
		restored += t.restored
	}
	return restored, nil
}

// groupByUser makes one script call per user, users in first-seen order:
// head() followed by each(i) for each of the user's sessions[i]. head must
// return a fresh slice, since each call's arguments are appended to it.
func groupByUser(sessions []*presencev1.Session, head func() []any, each func(i int) []any) []scriptCall {
	index := make(map[string]int)
	var calls []scriptCall
	for i, s := range sessions {
		c, ok := index[s.GetUserId()]
		if !ok {
			c = len(calls)
			index[s.GetUserId()] = c
			calls = append(calls, scriptCall{userID: s.GetUserId(), args: head()})
		}
		calls[c].args = append(calls[c].args, each(i)...)
	}
	return calls
}

// report passes the transitions scripts saw to OnChange.
func (r *Registry) report(ts []transition, now time.Time) {
	if r.onChange == nil {
		return
	}
	for _, t := range ts {
		lastSeen := t.lastSeen
		if lastSeen.IsZero() {
			lastSeen = now
		}
		if !t.liveBefore && t.foundExpired {
			// The user's sessions had expired unnoticed: they went offline
			// after they were last seen, before this call.
			r.onChange(t.userID, false, lastSeen)
		}
		switch {
		case !t.liveBefore && t.liveAfter:
			r.onChange(t.userID, true, now)
		case t.liveBefore && !t.liveAfter:
			r.onChange(t.userID, false, lastSeen)
		}
	}
}

// sortSessions orders one user's sessions oldest login first.
func sortSessions(ss []*presencev1.Session) {
	slices.SortFunc(ss, func(a, b *presencev1.Session) int {
		return cmp.Or(
			a.GetLoginTime().AsTime().Compare(b.GetLoginTime().AsTime()),
			cmp.Compare(a.GetSessionId(), b.GetSessionId()),
		)
	})
}

func (r *Registry) expiryKey() string { return r.prefix + "sess-expiry" }

// sweepBatch is how many users one Sweep checks.
const sweepBatch = 1000

// sweepScript removes users from the expiry index whose newest expiry is
// still the one that passed (a renewal meanwhile raised it).
// KEYS: the index. ARGV: now, then user ids.
var sweepScript = redis.NewScript(`
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 0
`)

// Sweep finds users whose sessions all expired without being unregistered
// (their edge died) and prunes them, which reports them offline. Without it
// such users would be noticed only when someone looks them up. It returns
// how many users it checked.
func (r *Registry) Sweep(ctx context.Context) (int, error) {
	now := r.now()
	users, err := r.client.ZRangeByScore(ctx, r.expiryKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: sweepBatch}).Result()
	if err != nil || len(users) == 0 {
		return 0, err
	}
	if _, err := r.load(ctx, users, false); err != nil {
		return 0, err
	}
	args := append([]any{now.UnixMilli()}, anySlice(users)...)
	if err := sweepScript.Run(ctx, r.client, []string{r.expiryKey()}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("sweep expiry index: %w", err)
	}
	return len(users), nil
}

// RunSweeper sweeps every interval until ctx is done.
func (r *Registry) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A dead edge may leave many users at once: keep sweeping while
			// full batches come back, within the interval.
			deadline := time.Now().Add(interval)
			for time.Now().Before(deadline) {
				n, err := r.Sweep(ctx)
				if err != nil && ctx.Err() == nil {
					r.log.Warn("presence: sweep", "err", err)
				}
				if err != nil || n < sweepBatch {
					break
				}
			}
		}
	}
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
