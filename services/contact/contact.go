// Package contact implements ContactService: each user's contact list and
// block list over a [Store].
//
// Every call that changes something appends a ContactChanged user event to
// the caller's own event stream in the same transaction and pushes it after
// the commit, so the caller's other devices apply it (or fetch it with sync
// if the push is lost). A call that changes nothing (adding a contact again
// with the same alias, removing one that is not there, blocking twice)
// appends nothing.
//
// Contacts and blocks are independent: blocking someone keeps them in the
// contact list (so unblocking restores things as they were) and adding a
// blocked user as a contact keeps the block. Neither is visible to the
// other user.
//
// Blocks are mirrored for the presence service, which has no store: see
// [BlockMirror] and [Service.ResyncBlockers].
package contact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/errcode"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/contact/v1/contactv1connect"
)

// UserNotifier pushes a committed user event to the user's live sessions,
// except senderSession (the session whose call caused it, if any).
// *fanout.Fanout implements it.
type UserNotifier interface {
	NotifyUser(ctx context.Context, user string, ev *chatv1.UserEvent, senderSession string)
}

// postCommitTimeout bounds the work done after a commit (the mirror),
// which runs even if the caller has gone away.
const postCommitTimeout = 5 * time.Second

// Service implements ContactService.
type Service struct {
	store  Store
	mirror BlockMirror
	notify UserNotifier
	log    *slog.Logger
}

var _ contactv1connect.ContactServiceHandler = (*Service)(nil)

// New returns a contact service on store, mirroring blocks into mirror
// (the one the presence service reads). notifier may be nil (nothing is
// pushed; devices still get every change through sync); a nil log discards
// logs.
func New(store Store, mirror BlockMirror, notifier UserNotifier, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, mirror: mirror, notify: notifier, log: log}
}

// target parses the user_id of a request about another user.
func target(self uuid.UUID, raw string) (uuid.UUID, error) {
	if raw == "" {
		return uuid.Nil, invalid("user_id is required")
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, invalid("user_id %q is not a valid id", raw)
	}
	if id == self {
		return uuid.Nil, invalid("user_id is the caller")
	}
	return id, nil
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func userNotFound(id uuid.UUID) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("user %s not found", id))
}

// errNoAccount is for a valid token whose account is gone.
var errNoAccount = connect.NewError(connect.CodeUnauthenticated, errors.New("the caller's account no longer exists"))

// internal gives err its public code (see errcode), hiding its details.
func (s *Service) internal(ctx context.Context, op string, err error) error {
	return errcode.Public(ctx, s.log, op, err)
}

// pushed hands a committed event (nil when nothing changed) to the notifier.
func (s *Service) pushed(ctx context.Context, id auth.Identity, ev *chatv1.UserEvent) {
	if ev != nil && s.notify != nil {
		s.notify.NotifyUser(ctx, id.UserID, ev, id.SessionID)
	}
}
