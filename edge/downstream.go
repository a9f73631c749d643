package edge

import (
	"errors"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/errcode"
)

// The services the edge calls (Deps) answer with Connect errors: in one
// process their handlers' own, split their clients'. This is where those
// errors become the core's, so no other core file knows Connect.

// publicError turns a failure met serving the session into what its client
// sees. The core's own Errors pass as they are; a service's Connect error
// keeps its code and message; anything else is classified by errcode
// (unavailable, deadline_exceeded, …), logged with op, and reported
// without its detail.
func (s *session) publicError(op string, err error) *Error {
	if e := new(Error); errors.As(err, &e) {
		return e
	}
	ce := new(connect.Error)
	errors.As(errcode.Public(s.ctx, s.e.log.With("session_id", s.id, "user_id", s.ident.UserID), op, err), &ce)
	return fromConnectError(ce)
}
