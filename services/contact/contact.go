// Package contact implements ContactService: each user's contact list and
// block list over Postgres.
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
// Blocks are mirrored into Redis for the presence service, which has no
// Postgres: see [presence.BlockersKey] and [Service.ResyncBlockers].
package contact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/errcode"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/contact/v1/contactv1connect"
	"github.com/wagglechat/waggle/services/chat"
)

// UserNotifier pushes a committed user event to the user's live sessions,
// except senderSession (the session whose call caused it, if any).
// *chat.Fanout implements it.
type UserNotifier interface {
	NotifyUser(ctx context.Context, user string, ev *chatv1.UserEvent, senderSession string)
}

// postCommitTimeout bounds the work done after a commit (the Redis mirror),
// which runs even if the caller has gone away.
const postCommitTimeout = 5 * time.Second

// Service implements ContactService.
type Service struct {
	db     *pgxpool.Pool
	rdb    *redis.Client
	prefix string
	notify UserNotifier
	log    *slog.Logger
}

var _ contactv1connect.ContactServiceHandler = (*Service)(nil)

// New returns a contact service on pool, mirroring blocks into rdb under
// redisPrefix (the prefix the presence service reads). notifier may be nil
// (nothing is pushed; devices still get every change through sync); a nil
// log discards logs.
func New(pool *pgxpool.Pool, rdb *redis.Client, redisPrefix string, notifier UserNotifier, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{db: pool, rdb: rdb, prefix: redisPrefix, notify: notifier, log: log}
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

// foreignKey reports whether err violates the named foreign key.
func foreignKey(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503" && pe.ConstraintName == constraint
}

// lockOwner takes the owner's row lock for the rest of tx. Every change to
// an owner's contacts and blocks, and every Redis mirror write of their
// blocks, runs under it, so the state each change reads (and puts in its
// event, or in Redis) is the state after every earlier change. FOR NO KEY
// UPDATE does not conflict with the KEY SHARE locks of foreign key checks,
// so others can still add this user as a contact meanwhile.
func lockOwner(ctx context.Context, tx pgx.Tx, owner uuid.UUID) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, owner).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoAccount
	}
	if err != nil {
		return fmt.Errorf("lock owner: %w", err)
	}
	return nil
}

// relation is what an owner has recorded about another user.
type relation struct {
	contact, blocked bool
	alias            string
}

func readRelation(ctx context.Context, tx pgx.Tx, owner, other uuid.UUID) (relation, error) {
	var r relation
	var alias *string
	err := tx.QueryRow(ctx, `SELECT
		(SELECT alias FROM contacts WHERE owner_id = $1 AND user_id = $2),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`, owner, other).Scan(&alias, &r.blocked)
	if alias != nil {
		r.contact, r.alias = true, *alias
	}
	if err != nil {
		return relation{}, fmt.Errorf("read relation: %w", err)
	}
	return r, nil
}

// appendChange reads the owner's relation to other after a change, in tx
// under the owner's lock, and appends it as the owner's next user event.
func appendChange(ctx context.Context, tx pgx.Tx, owner, other uuid.UUID) (*chatv1.UserEvent, error) {
	r, err := readRelation(ctx, tx, owner, other)
	if err != nil {
		return nil, err
	}
	return chat.AppendUserEvent(ctx, tx, owner, &chatv1.UserEvent{Kind: &chatv1.UserEvent_ContactChanged{
		ContactChanged: &chatv1.ContactChanged{UserId: other.String(), Contact: r.contact, Blocked: r.blocked, Alias: r.alias},
	}})
}

// pushed hands a committed event (nil when nothing changed) to the notifier.
func (s *Service) pushed(ctx context.Context, id auth.Identity, ev *chatv1.UserEvent) {
	if ev != nil && s.notify != nil {
		s.notify.NotifyUser(ctx, id.UserID, ev, id.SessionID)
	}
}
