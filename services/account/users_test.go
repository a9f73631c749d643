package account_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/internal/storetest"
	"github.com/wagglechat/waggle/services/account"
)

func TestGetUser(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		ann, bob := e.register(t, "ann"), e.register(t, "bob")
		ctx := as(ann.GetTokens().GetAccessToken())

		tests := []struct {
			name     string
			id       string
			want     string
			wantCode connect.Code
		}{
			{name: "other user", id: bob.GetUser().GetUserId(), want: "bob"},
			{name: "self", id: ann.GetUser().GetUserId(), want: "ann"},
			{name: "unknown", id: uuid.NewString(), wantCode: connect.CodeNotFound},
			{name: "not a uuid", id: "bob", wantCode: connect.CodeInvalidArgument},
			{name: "empty", id: "", wantCode: connect.CodeInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := e.client.GetUser(ctx, &accountv1.GetUserRequest{UserId: tt.id})
				if tt.wantCode != 0 {
					wantCode(t, err, tt.wantCode, "")
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				u := res.GetUser()
				if u.GetUsername() != tt.want || u.GetDisplayName() != "User "+tt.want || u.GetCreateTime() == nil {
					t.Fatalf("GetUser = %v, want %s", u, tt.want)
				}
			})
		}
		// The profile read back equals the one returned at registration.
		res, err := e.client.GetUser(ctx, &accountv1.GetUserRequest{UserId: bob.GetUser().GetUserId()})
		if err != nil || !res.GetUser().GetCreateTime().AsTime().Equal(bob.GetUser().GetCreateTime().AsTime()) {
			t.Fatalf("create time %v, registered %v (%v)", res.GetUser().GetCreateTime(), bob.GetUser().GetCreateTime(), err)
		}
	})
}

func TestBatchGetUsers(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		ann, bob, carol := e.register(t, "ann"), e.register(t, "bob"), e.register(t, "carol")
		ctx := as(ann.GetTokens().GetAccessToken())
		idOf := func(r *accountv1.RegisterResponse) string { return r.GetUser().GetUserId() }
		tooMany := make([]string, 501)
		for i := range tooMany {
			tooMany[i] = uuid.NewString()
		}

		tests := []struct {
			name     string
			ids      []string
			want     []string
			wantCode connect.Code
		}{
			{name: "request order", ids: []string{idOf(carol), idOf(ann), idOf(bob)}, want: []string{"carol", "ann", "bob"}},
			{name: "unknown left out", ids: []string{uuid.NewString(), idOf(bob)}, want: []string{"bob"}},
			{name: "duplicates once", ids: []string{idOf(bob), idOf(ann), idOf(bob)}, want: []string{"bob", "ann"}},
			{name: "none", ids: nil, want: nil},
			{name: "500 ids", ids: append(tooMany[:499:499], idOf(ann)), want: []string{"ann"}},
			{name: "501 ids", ids: tooMany, wantCode: connect.CodeInvalidArgument},
			{name: "invalid id", ids: []string{idOf(ann), "nope"}, wantCode: connect.CodeInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := e.client.BatchGetUsers(ctx, &accountv1.BatchGetUsersRequest{UserIds: tt.ids})
				if tt.wantCode != 0 {
					wantCode(t, err, tt.wantCode, "")
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, u := range res.GetUsers() {
					got = append(got, u.GetUsername())
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("usernames %v, want %v", got, tt.want)
				}
			})
		}
	})
}

func TestUpdateProfile(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		ann := e.register(t, "ann")
		ctx := as(ann.GetTokens().GetAccessToken())
		tests := []struct {
			name     string
			display  string
			wantCode connect.Code
		}{
			{name: "rename", display: "Ann Lee 🐝"},
			{name: "clear", display: ""},
			{name: "too long", display: strings.Repeat("a", 65), wantCode: connect.CodeInvalidArgument},
			{name: "control character", display: "Ann\x00", wantCode: connect.CodeInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := e.client.UpdateProfile(ctx, &accountv1.UpdateProfileRequest{DisplayName: tt.display})
				if tt.wantCode != 0 {
					wantCode(t, err, tt.wantCode, "")
					return
				}
				if err != nil || res.GetUser().GetDisplayName() != tt.display {
					t.Fatalf("UpdateProfile = %v, %v", res.GetUser(), err)
				}
				got, err := e.client.GetUser(ctx, &accountv1.GetUserRequest{UserId: ann.GetUser().GetUserId()})
				if err != nil || got.GetUser().GetDisplayName() != tt.display {
					t.Fatalf("GetUser after update = %v, %v", got.GetUser(), err)
				}
			})
		}
		_, err := e.client.UpdateProfile(context.Background(), &accountv1.UpdateProfileRequest{DisplayName: "x"})
		wantCode(t, err, connect.CodeUnauthenticated, "missing credentials")
	})
}

func TestListDevices(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		ann := e.register(t, "ann")
		e.clock.Advance(time.Second) // devices are listed oldest first
		laptop, err := e.client.Login(context.Background(), &accountv1.LoginRequest{Username: "ann", Password: "password-ann", DeviceName: "laptop"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.RefreshToken(context.Background(), &accountv1.RefreshTokenRequest{RefreshToken: laptop.GetTokens().GetRefreshToken()}); err != nil {
			t.Fatal(err)
		}
		e.register(t, "bob") // other users' devices are not listed

		res, err := e.client.ListDevices(as(ann.GetTokens().GetAccessToken()), &accountv1.ListDevicesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		d := res.GetDevices()
		if len(d) != 2 || d[0].GetDeviceId() != ann.GetDeviceId() || d[1].GetDeviceId() != laptop.GetDeviceId() {
			t.Fatalf("devices %v, want the phone then the laptop", d)
		}
		if d[0].GetName() != "phone" || d[1].GetName() != "laptop" {
			t.Fatalf("names %q, %q", d[0].GetName(), d[1].GetName())
		}
		if d[0].GetLastRefreshTime() != nil || d[1].GetLastRefreshTime() == nil {
			t.Fatalf("last refresh times %v, %v: want only the laptop's set", d[0].GetLastRefreshTime(), d[1].GetLastRefreshTime())
		}
	})
}
