package account

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// Store is the storage AccountService needs: users and their devices, each
// device holding one refresh token, stored as its hash. Implementations
// wrap their dependency's errors with %w, so errcode can tell an outage
// from a bug.
type Store interface {
	// CreateUser stores u, its password hash and its first device,
	// together or not at all: ErrUsernameTaken if the username is.
	CreateUser(ctx context.Context, u User, passwordHash string, first Device) error
	// UserByName returns the user with a normalized username and its
	// password hash, or ErrNotFound.
	UserByName(ctx context.Context, username string) (User, string, error)
	// User returns one user, or ErrNotFound.
	User(ctx context.Context, id uuid.UUID) (User, error)
	// Users returns those of ids that are users, in any order.
	Users(ctx context.Context, ids []uuid.UUID) ([]User, error)
	// SetDisplayName changes a user's display name and returns the user as
	// it now is, or ErrNotFound.
	SetDisplayName(ctx context.Context, id uuid.UUID, name string) (User, error)
	// AddDevice stores a device that just logged in.
	AddDevice(ctx context.Context, d Device) error
	// RotateRefresh finds the device whose refresh token has hash and
	// replaces that token with the one rotate returns. Two rotations of
	// one token are serialized: the second finds no device (ErrNotFound),
	// so one token yields one successor. rotate sees the device as stored;
	// its error leaves the device unchanged and is returned as it is.
	RotateRefresh(ctx context.Context, hash []byte, rotate func(Device) (Refresh, error)) error
	// RevokeDevice marks the user's device logged out at at. A device that
	// is revoked already, or is not the user's, is left as it is.
	RevokeDevice(ctx context.Context, user, device uuid.UUID, at time.Time) error
	// LiveDevices lists the user's devices that are not revoked and whose
	// refresh token has not expired at now, oldest first.
	LiveDevices(ctx context.Context, user uuid.UUID, now time.Time) ([]Device, error)
}

// Errors a Store reports; the service gives them their codes.
var (
	ErrNotFound      = errors.New("account: not found")
	ErrUsernameTaken = errors.New("username is already taken")
)

// User is a user as stored, without its password hash.
type User struct {
	ID          uuid.UUID
	Username    string
	DisplayName string
	CreateTime  time.Time
}

// Device is a logged-in device as stored. LiveDevices leaves RefreshHash
// empty.
type Device struct {
	ID, UserID        uuid.UUID
	Name              string
	RefreshHash       []byte
	RefreshExpireTime time.Time
	CreateTime        time.Time
	// Zero: never.
	LastRefreshTime, RevokeTime time.Time
}

// Refresh is a device's next refresh token, as RotateRefresh stores it.
type Refresh struct {
	Hash       []byte
	ExpireTime time.Time
	// Time is when the rotation happened (the device's LastRefreshTime).
	Time time.Time
}
