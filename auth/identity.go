// Package auth issues and verifies access tokens, hashes passwords and
// carries the caller's identity through a request's context.
package auth

import "context"

// Identity is who a request acts for. Edges calling services on a user's
// behalf present the internal credential and pass the user's identity along,
// so services see the same Identity either way.
type Identity struct {
	UserID   string
	DeviceID string
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
