// Package presence knows which users are online and where: the internal
// SessionRegistryService, where edges register the sessions they hold, and
// the public PresenceService, which tells apps who is online.
//
// Sessions live in a store (Redis, or memory for a single process) with a
// TTL that edges renew in batches, so the sessions of an edge that dies
// expire on their own. See registry_redis.go for the Redis key layout.
package presence

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

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

// RegistryConfig tunes [NewRedisRegistry] and [NewMemoryRegistry]. The
// zero value is usable.
type RegistryConfig struct {
	// SessionTTL is how long a session stays live without renewal.
	// Zero (or negative) means DefaultSessionTTL.
	SessionTTL time.Duration
	// OnChange is called when a user goes online (their first live session
	// was registered) or offline (their last one was unregistered, or was
	// found expired; at is then the last time they were known connected).
	// Each transition is detected atomically in the store and reported once.
	// It runs in the request's goroutine after the write and must be fast;
	// calls for one user from concurrent requests may arrive out of order,
	// so order them by at. Zero: transitions are not reported.
	OnChange func(userID string, online bool, at time.Time)
	// Now is the clock for session expiry. Zero means time.Now.
	Now func() time.Time
}

// sessionStore keeps live sessions, each until its expiry, and when each
// user was last seen. Each method is atomic per user and returns what it saw
// of each user it changed, so that every transition is reported exactly once
// however many registries share the store. Times are the registry's (now),
// never the store's own.
type sessionStore interface {
	// write stores sessions (edge and login time filled in) live until
	// expiry, prunes the users' expired ones and sets their last seen to
	// now. Transitions come in first-seen user order, counting restored.
	write(ctx context.Context, sessions []*presencev1.Session, now, expiry time.Time) ([]transition, error)
	// unregister removes sessions by session and user id, and the users'
	// expired ones; users whose session was found were last seen now.
	unregister(ctx context.Context, sessions []*presencev1.Session, now time.Time) ([]transition, error)
	// load reads the live sessions of userIDs (each user once), oldest
	// login first, and if asked their last seen times, in userIDs order. It
	// also returns the users it found expired sessions of, to prune.
	load(ctx context.Context, userIDs []string, withLastSeen bool, now time.Time) (states []UserState, expired []string, err error)
	// prune removes the expired sessions of userIDs.
	prune(ctx context.Context, userIDs []string, now time.Time) ([]transition, error)
	// sweep prunes up to limit users whose newest session expiry has
	// passed, and returns how many users it checked.
	sweep(ctx context.Context, now time.Time, limit int) (int, []transition, error)
}

// transition is what a store saw of one user's state in one change.
type transition struct {
	userID       string
	liveBefore   bool
	liveAfter    bool
	foundExpired bool
	// lastSeen is the store's last-seen value: the offline time to report.
	lastSeen time.Time
	restored int
}

// UserState is what the registry knows of one user.
type UserState struct {
	UserID   string
	Sessions []*presencev1.Session // live ones, oldest login first
	LastSeen time.Time             // zero if never seen or not asked for
}

// Registry implements the SessionRegistryService over a session store:
// Redis for processes that share it, or memory for a single process.
type Registry struct {
	store    sessionStore
	log      *slog.Logger
	ttl      time.Duration
	onChange func(userID string, online bool, at time.Time)
	now      func() time.Time
}

var _ presencev1connect.SessionRegistryServiceHandler = (*Registry)(nil)

// newRegistry returns a registry over store. A nil logger discards logs.
func newRegistry(store sessionStore, logger *slog.Logger, cfg RegistryConfig) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{store: store, log: logger, ttl: cfg.sessionTTL(), onChange: cfg.OnChange, now: cfg.Now}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

func (c RegistryConfig) sessionTTL() time.Duration {
	if c.SessionTTL <= 0 {
		return DefaultSessionTTL
	}
	return c.SessionTTL
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
	ts, err := r.store.unregister(ctx, sessions, now)
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
	states, err := r.UserStates(ctx, ids, false)
	if err != nil {
		return nil, storeError(ctx, "lookup sessions", err)
	}
	for _, st := range states {
		res.Sessions = append(res.Sessions, st.Sessions...)
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

// UserStates reads the live sessions (and, if asked, last-seen times) of
// userIDs, each once, in userIDs order. Users found with expired sessions
// are pruned after the read, reporting the offline transitions that nobody
// had seen yet.
func (r *Registry) UserStates(ctx context.Context, userIDs []string, withLastSeen bool) ([]UserState, error) {
	now := r.now()
	states, expired, err := r.store.load(ctx, userIDs, withLastSeen, now)
	if err != nil {
		return nil, err
	}
	if len(expired) > 0 {
		// The answer is already right; pruning only tidies and reports, so
		// its failure is logged, not returned.
		ts, err := r.store.prune(ctx, expired, now)
		if err != nil {
			r.log.Warn("presence: prune expired sessions", "users", len(expired), "err", err)
		}
		r.report(ts, now)
	}
	return states, nil
}

// write registers or renews sessions (on edgeID, if set) and returns how
// many were not live before.
func (r *Registry) write(ctx context.Context, sessions []*presencev1.Session, edgeID string) (int, error) {
	if len(sessions) == 0 {
		return 0, nil
	}
	now := r.now()
	stored := make([]*presencev1.Session, len(sessions))
	for i, s := range sessions {
		stored[i] = &presencev1.Session{
			SessionId: s.GetSessionId(),
			UserId:    s.GetUserId(),
			DeviceId:  s.GetDeviceId(),
			EdgeId:    cmp.Or(s.GetEdgeId(), edgeID),
			LoginTime: s.GetLoginTime(),
		}
		if stored[i].LoginTime == nil {
			stored[i].LoginTime = timestamppb.New(now)
		}
	}
	ts, err := r.store.write(ctx, stored, now, now.Add(r.ttl))
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

// userGroup is one user's sessions[i] for each i in indexes.
type userGroup struct {
	userID  string
	indexes []int
}

// groupByUser groups sessions by user, users in first-seen order, as stores
// change one user at a time.
func groupByUser(sessions []*presencev1.Session) []userGroup {
	index := make(map[string]int)
	var groups []userGroup
	for i, s := range sessions {
		g, ok := index[s.GetUserId()]
		if !ok {
			g = len(groups)
			index[s.GetUserId()] = g
			groups = append(groups, userGroup{userID: s.GetUserId()})
		}
		groups[g].indexes = append(groups[g].indexes, i)
	}
	return groups
}

// report passes the transitions the store saw to OnChange.
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

// sweepBatch is how many users one Sweep checks.
const sweepBatch = 1000

// Sweep finds users whose sessions all expired without being unregistered
// (their edge died) and prunes them, which reports them offline. Without it
// such users would be noticed only when someone looks them up. It returns
// how many users it checked.
func (r *Registry) Sweep(ctx context.Context) (int, error) {
	now := r.now()
	n, ts, err := r.store.sweep(ctx, now, sweepBatch)
	r.report(ts, now)
	return n, err
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
