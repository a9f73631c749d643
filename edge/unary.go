package edge

import (
	"context"
	"errors"

	"github.com/wagglechat/waggle/auth"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// Ack and UpdatePresenceSubscription serve the unary calls that stand in for
// a push-only session's missing client-to-server half. The session must be
// on this edge and be the caller's own.

var errNoSession = errors.New("no such session on this edge")

// Ack acknowledges the session's pushes up to pushID and counts as its
// heartbeat; push id 0 is a pure heartbeat.
func (e *Edge) Ack(caller auth.Identity, sessionID string, pushID uint64) error {
	s, err := e.callerSession(caller, sessionID)
	if err != nil {
		return err
	}
	s.touch()
	s.ack(pushID)
	return nil
}

// UpdatePresenceSubscription changes whose presence the session follows and
// returns the added users' presence. It counts as a heartbeat.
func (e *Edge) UpdatePresenceSubscription(ctx context.Context, caller auth.Identity, sessionID string, sub *edgev1.PresenceSubscription) (*edgev1.PresenceSnapshot, error) {
	s, err := e.callerSession(caller, sessionID)
	if err != nil {
		return nil, err
	}
	s.touch()
	ctx, cancel := context.WithTimeout(auth.WithInternal(auth.WithIdentity(ctx, s.ident)), e.cfg.CommandTimeout)
	defer cancel()
	return s.updatePresenceSubscription(ctx, sub)
}

// callerSession finds a live session of the caller. Someone else's session
// is not found, like a missing one, so session ids cannot be probed.
func (e *Edge) callerSession(caller auth.Identity, sessionID string) (*session, error) {
	s := e.hub.get(sessionID)
	if s == nil || !s.belongsTo(caller) {
		return nil, newError(CodeNotFound, errNoSession)
	}
	return s, nil
}
