package account

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
)

var errNoUser = errors.New("user not found")

func userProto(u User) *accountv1.User {
	return &accountv1.User{
		UserId:      u.ID.String(),
		Username:    u.Username,
		DisplayName: u.DisplayName,
		CreateTime:  timestamppb.New(u.CreateTime),
	}
}

// userByName returns the user and password hash for a username as typed at
// login, or ErrNotFound.
func (s *Service) userByName(ctx context.Context, typed string) (User, string, error) {
	username, err := normalizeUsername(typed)
	if err != nil {
		return User{}, "", ErrNotFound // cannot have been registered
	}
	return s.store.UserByName(ctx, username)
}

// userResult answers a call that returns one user: NotFound if the store
// has none.
func (s *Service) userResult(ctx context.Context, op string, u User, err error) (*accountv1.User, error) {
	if errors.Is(err, ErrNotFound) {
		return nil, connect.NewError(connect.CodeNotFound, errNoUser)
	}
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return userProto(u), nil
}

// GetUser returns one public profile.
func (s *Service) GetUser(ctx context.Context, req *accountv1.GetUserRequest) (*accountv1.GetUserResponse, error) {
	id, err := parseUserID(req.GetUserId())
	if err != nil {
		return nil, err
	}
	u, err := s.store.User(ctx, id)
	pu, err := s.userResult(ctx, "get user", u, err)
	if err != nil {
		return nil, err
	}
	return &accountv1.GetUserResponse{User: pu}, nil
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
	users, err := s.store.Users(ctx, ids)
	if err != nil {
		return nil, s.fail(ctx, "batch get users", err)
	}
	found := make(map[uuid.UUID]User, len(users))
	for _, u := range users {
		found[u.ID] = u
	}
	res := &accountv1.BatchGetUsersResponse{Users: make([]*accountv1.User, 0, len(found))}
	for _, id := range ids {
		if u, ok := found[id]; ok {
			res.Users = append(res.Users, userProto(u))
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
	u, err := s.store.SetDisplayName(ctx, c.userID, req.GetDisplayName())
	pu, err := s.userResult(ctx, "update profile", u, err)
	if err != nil {
		return nil, err
	}
	return &accountv1.UpdateProfileResponse{User: pu}, nil
}

// ListDevices lists the caller's devices that are still logged in: not
// revoked and with a refresh token that has not expired.
func (s *Service) ListDevices(ctx context.Context, _ *accountv1.ListDevicesRequest) (*accountv1.ListDevicesResponse, error) {
	c, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	devices, err := s.store.LiveDevices(ctx, c.userID, s.clock())
	if err != nil {
		return nil, s.fail(ctx, "list devices", err)
	}
	res := &accountv1.ListDevicesResponse{}
	for _, d := range devices {
		pd := &accountv1.Device{DeviceId: d.ID.String(), Name: d.Name, CreateTime: timestamppb.New(d.CreateTime)}
		if !d.LastRefreshTime.IsZero() {
			pd.LastRefreshTime = timestamppb.New(d.LastRefreshTime)
		}
		res.Devices = append(res.Devices, pd)
	}
	return res, nil
}
