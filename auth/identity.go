// Package auth issues and verifies access tokens, hashes passwords and
// carries the caller's identity through a request's context.
package auth

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"github.com/google/uuid"
)

// Identity is who a request acts for. Edges calling services on a user's
// behalf present the internal credential and pass the user's identity along,
// so services see the same Identity either way.
type Identity struct {
	UserID   string
	DeviceID string
	// SessionID is the edge session a command came from, when an edge acts
	// for a user; the chat service skips that session when it pushes the
	// command's event, since the command's answer already carries it.
	SessionID string
}

type identityKey struct{}

// WithIdentity returns a context carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity set by WithIdentity.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.UserID != ""
}

type internalKey struct{}

// WithInternal marks ctx as a call from a trusted internal caller (an edge or
// another service), not from an app. The server interceptor sets it for
// requests carrying the internal credential; in one process, an edge calling
// handlers directly sets it itself.
func WithInternal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

// IsInternal reports whether ctx was marked by WithInternal. Internal-only
// services (SessionRegistryService, DeliveryService) require it.
func IsInternal(ctx context.Context) bool {
	internal, _ := ctx.Value(internalKey{}).(bool)
	return internal
}

// Caller returns the identity a handler acts for, with its user id parsed.
// The interceptor guarantees one on every non-public procedure, so a
// missing or malformed one is refused as unauthenticated.
func Caller(ctx context.Context) (Identity, uuid.UUID, error) {
	id, ok := FromContext(ctx)
	if !ok {
		return Identity{}, uuid.Nil, connect.NewError(connect.CodeUnauthenticated, errors.New("missing credentials"))
	}
	uid, err := uuid.Parse(id.UserID)
	if err != nil {
		return Identity{}, uuid.Nil, connect.NewError(connect.CodeUnauthenticated, errors.New("invalid user in credentials"))
	}
	return id, uid, nil
}
