// Package account implements AccountService: registration, login, token
// refresh and logout, and public profiles, over a [Store].
package account

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/errcode"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/ratelimit"
)

// DefaultRefreshTTL is how long a refresh token lives. Every refresh starts a
// new period, so a device used at least monthly stays logged in.
const DefaultRefreshTTL = 30 * 24 * time.Hour

// DeviceRevoker closes the live sessions of a device that logged out. The app
// wires it to the edges; AccountService only revokes the device's tokens.
type DeviceRevoker interface {
	RevokeDevice(ctx context.Context, device auth.Identity) error
}

// Options tunes a Service. The zero value is production's defaults.
type Options struct {
	// RefreshTTL defaults to DefaultRefreshTTL.
	RefreshTTL time.Duration
	// Passwords defaults to auth.DefaultPasswordParams with
	// auth.DefaultConcurrentHashes at once.
	Passwords *auth.Passwords
	// Revoker, if set, closes a logged-out device's sessions.
	Revoker DeviceRevoker
	// Now is the clock; defaults to time.Now.
	Now func() time.Time
	// Limits bound the calls of one source address.
	Limits Limits
}

// Limits are how many calls a minute a source address may make, in bursts
// of as many. The source is the TCP peer's address (an IPv6 address counts
// by its /64, which one host usually has whole). Zero fields take the
// defaults; negative ones mean no limit.
type Limits struct {
	// Login bounds logins to one username from one address, against
	// guessing its password. Per address, so that nobody elsewhere can use
	// up the real user's attempts. Default 10.
	Login int
	// LoginAddress bounds logins from one address over all usernames,
	// against trying one password on many accounts. Default 30.
	LoginAddress int
	// Register bounds registrations from one address: each costs an
	// argon2id hash and a user. Default 10.
	Register int
	// Refresh bounds token refreshes from one address. Default 60.
	Refresh int
}

// DefaultLimits are the Limits a zero field takes.
var DefaultLimits = Limits{Login: 10, LoginAddress: 30, Register: 10, Refresh: 60}

// Service implements accountv1connect.AccountServiceHandler.
type Service struct {
	store      Store
	signer     *auth.Signer
	log        *slog.Logger
	passwords  *auth.Passwords
	revoker    DeviceRevoker
	refreshTTL time.Duration
	now        func() time.Time
	// Per source address; nil means no limit.
	logins, loginAddrs, registers, refreshes *ratelimit.Limiter
}

var _ accountv1connect.AccountServiceHandler = (*Service)(nil)

// New returns the service on store. signer issues the access tokens it
// hands out; a nil log discards.
func New(store Store, signer *auth.Signer, log *slog.Logger, opts Options) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store:      store,
		signer:     signer,
		log:        log,
		passwords:  opts.Passwords,
		revoker:    opts.Revoker,
		refreshTTL: opts.RefreshTTL,
		now:        opts.Now,
		logins:     perMinute(opts.Limits.Login, DefaultLimits.Login),
		loginAddrs: perMinute(opts.Limits.LoginAddress, DefaultLimits.LoginAddress),
		registers:  perMinute(opts.Limits.Register, DefaultLimits.Register),
		refreshes:  perMinute(opts.Limits.Refresh, DefaultLimits.Refresh),
	}
	if s.passwords == nil {
		s.passwords = auth.NewPasswords(auth.DefaultPasswordParams, 0)
	}
	if s.refreshTTL <= 0 {
		s.refreshTTL = DefaultRefreshTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// clock returns the current time at microseconds, the precision of
// Postgres's timestamps, so what a call returns equals what a later read
// returns.
func (s *Service) clock() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// caller is the authenticated user and device of a call.
type caller struct {
	userID, deviceID uuid.UUID
}

func (c caller) identity() auth.Identity {
	return auth.Identity{UserID: c.userID.String(), DeviceID: c.deviceID.String()}
}

func callerOf(ctx context.Context) (caller, error) {
	id, ok := auth.FromContext(ctx)
	if !ok {
		return caller{}, connect.NewError(connect.CodeUnauthenticated, errors.New("missing credentials"))
	}
	userID, uerr := uuid.Parse(id.UserID)
	deviceID, derr := uuid.Parse(id.DeviceID)
	if uerr != nil || derr != nil {
		return caller{}, connect.NewError(connect.CodeUnauthenticated, errors.New("caller identity is not a user and device id"))
	}
	return caller{userID: userID, deviceID: deviceID}, nil
}

// fail gives an error from storage or hashing its public code (see
// errcode), without its text, which may hold SQL or hashes.
func (s *Service) fail(ctx context.Context, op string, err error) error {
	return errcode.Public(ctx, s.log, op, err)
}
