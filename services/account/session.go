package account

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/wagglechat/waggle/auth"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
)

// Client-facing failures of the token lifecycle. Login gives one message for
// an unknown user and a wrong password so usernames cannot be probed.
var (
	errBadLogin       = errors.New("invalid username or password")
	errBadRefresh     = errors.New("invalid refresh token")
	errRefreshExpired = errors.New("refresh token expired")
	errDeviceRevoked  = errors.New("refresh token revoked: the device logged out")
)

func unauthenticated(err error) error {
	return connect.NewError(connect.CodeUnauthenticated, err)
}

// Register creates a user and logs its first device in, together.
func (s *Service) Register(ctx context.Context, req *accountv1.RegisterRequest) (*accountv1.RegisterResponse, error) {
	username, err := normalizeUsername(req.GetUsername())
	if err != nil {
		return nil, err
	}
	if err := validatePassword(req.GetPassword()); err != nil {
		return nil, err
	}
	if err := validateLabel("display name", req.GetDisplayName()); err != nil {
		return nil, err
	}
	if err := validateLabel("device name", req.GetDeviceName()); err != nil {
		return nil, err
	}
	if err := limit(s.registers, sourceAddr(ctx), "registrations from this address"); err != nil {
		return nil, err
	}
	// Hash before the transaction: it is slow and needs no database.
	hash, err := s.passwords.Hash(ctx, req.GetPassword())
	if err != nil {
		return nil, s.fail(ctx, "register: hash password", err)
	}
	now := s.clock()
	u := User{ID: uuid.New(), Username: username, DisplayName: req.GetDisplayName(), CreateTime: now}
	device, tokens, err := s.newDevice(u.ID, req.GetDeviceName(), now)
	if err != nil {
		return nil, s.fail(ctx, "register", err)
	}
	err = s.store.CreateUser(ctx, u, hash, device)
	if errors.Is(err, ErrUsernameTaken) {
		return nil, connect.NewError(connect.CodeAlreadyExists, ErrUsernameTaken)
	}
	if err != nil {
		return nil, s.fail(ctx, "register", err)
	}
	s.log.InfoContext(ctx, "user registered", "user_id", u.ID, "device_id", device.ID)
	return &accountv1.RegisterResponse{User: userProto(u), DeviceId: device.ID.String(), Tokens: tokens}, nil
}

// Login checks the password and logs a new device in.
func (s *Service) Login(ctx context.Context, req *accountv1.LoginRequest) (*accountv1.LoginResponse, error) {
	if req.GetUsername() == "" || req.GetPassword() == "" {
		return nil, invalid("username and password are required")
	}
	if len(req.GetPassword()) > maxPasswordLen {
		return nil, invalid("password must be at most %d bytes", maxPasswordLen)
	}
	if err := validateLabel("device name", req.GetDeviceName()); err != nil {
		return nil, err
	}
	// Per username and address first: guessing one password refused there
	// leaves the address its attempts at other usernames.
	addr := sourceAddr(ctx)
	if err := limit(s.logins, strings.ToLower(req.GetUsername())+"\x00"+addr, "login attempts for this username from this address"); err != nil {
		return nil, err
	}
	if err := limit(s.loginAddrs, addr, "login attempts from this address"); err != nil {
		return nil, err
	}
	u, hash, err := s.userByName(ctx, req.GetUsername())
	if errors.Is(err, ErrNotFound) {
		// Spend a hash's time anyway, so timing does not reveal which
		// usernames exist.
		if err := s.passwords.CheckUnknown(ctx, req.GetPassword()); err != nil {
			return nil, s.fail(ctx, "login: dummy hash", err)
		}
		return nil, unauthenticated(errBadLogin)
	}
	if err != nil {
		return nil, s.fail(ctx, "login", err)
	}
	ok, err := s.passwords.Check(ctx, hash, req.GetPassword())
	if err != nil {
		return nil, s.fail(ctx, "login: check password", err)
	}
	if !ok {
		return nil, unauthenticated(errBadLogin)
	}
	device, tokens, err := s.newDevice(u.ID, req.GetDeviceName(), s.clock())
	if err == nil {
		err = s.store.AddDevice(ctx, device)
	}
	if err != nil {
		return nil, s.fail(ctx, "login", err)
	}
	s.log.InfoContext(ctx, "device logged in", "user_id", u.ID, "device_id", device.ID)
	return &accountv1.LoginResponse{User: userProto(u), DeviceId: device.ID.String(), Tokens: tokens}, nil
}

// RefreshToken rotates the device's refresh token: the presented one stops
// working as its successor is stored, and two concurrent uses of one token
// yield one new pair, not two (see Store.RotateRefresh).
func (s *Service) RefreshToken(ctx context.Context, req *accountv1.RefreshTokenRequest) (*accountv1.RefreshTokenResponse, error) {
	if req.GetRefreshToken() == "" {
		return nil, invalid("refresh token is required")
	}
	if err := limit(s.refreshes, sourceAddr(ctx), "token refreshes from this address"); err != nil {
		return nil, err
	}
	now := s.clock()
	var tokens *accountv1.Tokens
	err := s.store.RotateRefresh(ctx, auth.HashRefreshToken(req.GetRefreshToken()), func(d Device) (Refresh, error) {
		switch {
		case !d.RevokeTime.IsZero():
			return Refresh{}, unauthenticated(errDeviceRevoked)
		case !now.Before(d.RefreshExpireTime):
			return Refresh{}, unauthenticated(errRefreshExpired)
		}
		g, err := s.grant(auth.Identity{UserID: d.UserID.String(), DeviceID: d.ID.String()}, now)
		if err != nil {
			return Refresh{}, fmt.Errorf("issue tokens: %w", err)
		}
		tokens = g.tokens
		return Refresh{Hash: g.refreshHash, ExpireTime: g.refreshExpire, Time: now}, nil
	})
	if errors.Is(err, ErrNotFound) {
		// Unknown, or already rotated away.
		return nil, unauthenticated(errBadRefresh)
	}
	if err != nil {
		return nil, s.fail(ctx, "refresh token", err)
	}
	return &accountv1.RefreshTokenResponse{Tokens: tokens}, nil
}

// Logout revokes the calling device, then has its live sessions closed. It is
// idempotent, so a client whose sessions could not be closed retries it.
// Access tokens already issued stay valid until they expire (at most the
// access TTL): they are verified without the database.
func (s *Service) Logout(ctx context.Context, _ *accountv1.LogoutRequest) (*accountv1.LogoutResponse, error) {
	c, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.store.RevokeDevice(ctx, c.userID, c.deviceID, s.clock()); err != nil {
		return nil, s.fail(ctx, "logout: revoke device", err)
	}
	if s.revoker != nil {
		if err := s.revoker.RevokeDevice(ctx, c.identity()); err != nil {
			s.log.WarnContext(ctx, "logout: closing sessions failed", "user_id", c.userID, "device_id", c.deviceID, "err", err)
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("device logged out but its live sessions could not be closed; retry"))
		}
	}
	s.log.InfoContext(ctx, "device logged out", "user_id", c.userID, "device_id", c.deviceID)
	return &accountv1.LogoutResponse{}, nil
}
