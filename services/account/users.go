package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
)

var errNoUser = errors.New("user not found")

// user is a users row without its password hash, which only Login reads.
type user struct {
	id          uuid.UUID
	username    string
	displayName string
	createTime  time.Time
}

const userColumns = `id, username, display_name, create_time`

func (u *user) scanFields() []any {
	return []any{&u.id, &u.username, &u.displayName, &u.createTime}
}

func (u user) proto() *accountv1.User {
	return &accountv1.User{
		UserId:      u.id.String(),
		Username:    u.username,
		DisplayName: u.displayName,
		CreateTime:  timestamppb.New(u.createTime),
	}
}

// userByName returns the user and password hash for a username as typed at
// login, or errNoUser.
func (s *Service) userByName(ctx context.Context, typed string) (user, string, error) {
	username, err := normalizeUsername(typed)
	if err != nil {
		return user{}, "", errNoUser // cannot have been registered
	}
	var (
		u    user
		hash string
	)
	err = s.pool.QueryRow(ctx, `SELECT `+userColumns+`, password_hash FROM users WHERE username = $1`, username).
		Scan(append(u.scanFields(), &hash)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return user{}, "", errNoUser
	}
	if err != nil {
		return user{}, "", fmt.Errorf("find user by name: %w", err)
	}
	return u, hash, nil
}

// GetUser returns one public profile.
func (s *Service) GetUser(ctx context.Context, req *accountv1.GetUserRequest) (*accountv1.GetUserResponse, error) {
	id, err := parseUserID(req.GetUserId())
	if err != nil {
		return nil, err
	}
	var u user
	err = s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id).Scan(u.scanFields()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, connect.NewError(connect.CodeNotFound, errNoUser)
	}
	if err != nil {
		return nil, s.fail(ctx, "get user", err)
	}
	return &accountv1.GetUserResponse{User: u.proto()}, nil
}

// BatchGetUsers returns the known users among the ids, in request order,
// each once.
func (s *Service) BatchGetUsers(ctx context.Context, req *accountv1.BatchGetUsersRequest) (*accountv1.BatchGetUsersResponse, error) {
	if n := len(req.GetUserIds()); n > maxBatchUsers {
		return nil, invalid("at most %d user ids per call, got %d", maxBatchUsers, n)
	}
	ids := make([]uuid.UUID, 0, len(req.GetUserIds()))
	for _, raw := range req.GetUserIds() {
		id, err := parseUserID(raw)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, s.fail(ctx, "batch get users", err)
	}
	found := make(map[uuid.UUID]user, len(ids))
	var u user
	_, err = pgx.ForEachRow(rows, u.scanFields(), func() error {
		found[u.id] = u
		return nil
	})
	if err != nil {
		return nil, s.fail(ctx, "batch get users", err)
	}
	res := &accountv1.BatchGetUsersResponse{Users: make([]*accountv1.User, 0, len(found))}
	for _, id := range ids {
		if u, ok := found[id]; ok {
			res.Users = append(res.Users, u.proto())
			delete(found, id) // each user once, at its first position
		}
	}
	return res, nil
}

// UpdateProfile changes the caller's display name.
func (s *Service) UpdateProfile(ctx context.Context, req *accountv1.UpdateProfileRequest) (*accountv1.UpdateProfileResponse, error) {
	c, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateLabel("display name", req.GetDisplayName()); err != nil {
		return nil, err
	}
	var u user
	err = s.pool.QueryRow(ctx, `UPDATE users SET display_name = $2 WHERE id = $1 RETURNING `+userColumns,
		c.userID, req.GetDisplayName()).Scan(u.scanFields()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, connect.NewError(connect.CodeNotFound, errNoUser)
	}
	if err != nil {
		return nil, s.fail(ctx, "update profile", err)
	}
	return &accountv1.UpdateProfileResponse{User: u.proto()}, nil
}

// ListDevices lists the caller's devices that are still logged in: not
// revoked and with a refresh token that has not expired.
func (s *Service) ListDevices(ctx context.Context, _ *accountv1.ListDevicesRequest) (*accountv1.ListDevicesResponse, error) {
	c, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
		SELECT id, name, create_time, last_refresh_time FROM devices
		WHERE user_id = $1 AND revoke_time IS NULL AND refresh_expire_time > $2
		ORDER BY create_time, id`,
		c.userID, s.clock())
	if err != nil {
		return nil, s.fail(ctx, "list devices", err)
	}
	var (
		res         accountv1.ListDevicesResponse
		id          uuid.UUID
		name        string
		created     time.Time
		lastRefresh *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &name, &created, &lastRefresh}, func() error {
		d := &accountv1.Device{DeviceId: id.String(), Name: name, CreateTime: timestamppb.New(created)}
		if lastRefresh != nil {
			d.LastRefreshTime = timestamppb.New(*lastRefresh)
		}
		res.Devices = append(res.Devices, d)
		return nil
	})
	if err != nil {
		return nil, s.fail(ctx, "list devices", err)
	}
	return &res, nil
}
