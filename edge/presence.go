package edge

import (
	"context"
	"errors"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

const (
	// maxPresenceSubscriptions bounds the users one session follows.
	maxPresenceSubscriptions = 1000
	// maxPresenceLookup is GetPresence's limit on user ids per call.
	maxPresenceLookup = 500
)

// updatePresenceSubscription applies removals, then additions, to the users
// whose presence the session follows, and returns the added users'
// presence. The set is kept so live presence changes can be routed to it.
func (s *session) updatePresenceSubscription(ctx context.Context, sub *edgev1.PresenceSubscription) (*edgev1.PresenceSnapshot, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, newError(CodeUnavailable, errors.New("the session is closing"))
	}
	if s.presenceSubs == nil {
		s.presenceSubs = make(map[string]struct{})
	}
	var removed []string
	for _, id := range sub.GetRemoveUserIds() {
		if _, ok := s.presenceSubs[id]; ok {
			delete(s.presenceSubs, id)
			removed = append(removed, id)
		}
	}
	var added []string
	seen := make(map[string]bool, len(sub.GetAddUserIds()))
	for _, id := range sub.GetAddUserIds() {
		if id != "" && !seen[id] {
			seen[id] = true
			added = append(added, id)
		}
	}
	fresh := 0
	for _, id := range added {
		if _, ok := s.presenceSubs[id]; !ok {
			fresh++
		}
	}
	if len(s.presenceSubs)+fresh > maxPresenceSubscriptions {
		s.mu.Unlock()
		return nil, errorf(CodeResourceExhausted,
			"a session follows at most %d users' presence", maxPresenceSubscriptions)
	}
	for _, id := range added {
		s.presenceSubs[id] = struct{}{}
	}
	s.mu.Unlock()
	s.e.watchers.unfollow(s, removed)
	// Follow before reading the snapshot, so no change falls between them.
	s.e.watchers.follow(s, added)
	// A unary update can race the session's end: finish unfollows what the
	// session followed when it ran, so undo what was added after.
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.e.watchers.unfollow(s, added)
		return nil, newError(CodeUnavailable, errors.New("the session is closing"))
	}

	snap := &edgev1.PresenceSnapshot{}
	for start := 0; start < len(added); start += maxPresenceLookup {
		batch := added[start:min(start+maxPresenceLookup, len(added))]
		res, err := s.e.deps.Presence.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: batch})
		if err != nil {
			return nil, s.publicError("edge: presence snapshot", err)
		}
		snap.Presences = append(snap.Presences, res.GetPresences()...)
	}
	// Users the caller may not see stay out of the session's follows, so
	// their live changes never reach it.
	var hidden []string
	for _, p := range snap.GetPresences() {
		if p.GetHidden() {
			hidden = append(hidden, p.GetUserId())
		}
	}
	if len(hidden) > 0 {
		s.mu.Lock()
		for _, id := range hidden {
			delete(s.presenceSubs, id)
		}
		s.mu.Unlock()
		s.e.watchers.unfollow(s, hidden)
	}
	return snap, nil
}
