package account_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/auth"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/internal/storetest"
	"github.com/wagglechat/waggle/services/account"
)

func TestRegister(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		e.register(t, "taken")
		ok := func(username string) *accountv1.RegisterRequest {
			return &accountv1.RegisterRequest{Username: username, Password: "long enough", DisplayName: "Ann", DeviceName: "Ann's phone"}
		}
		with := func(f func(*accountv1.RegisterRequest)) *accountv1.RegisterRequest {
			r := ok("someone")
			f(r)
			return r
		}

		tests := []struct {
			name         string
			req          *accountv1.RegisterRequest
			wantUsername string
			wantCode     connect.Code
			wantMsg      string
		}{
			{name: "valid", req: ok("ann"), wantUsername: "ann"},
			{name: "case-folded", req: ok("Bob.Smith-2_x"), wantUsername: "bob.smith-2_x"},
			{name: "32 characters", req: ok(strings.Repeat("c", 32)), wantUsername: strings.Repeat("c", 32)},
			{name: "duplicate", req: ok("taken"), wantCode: connect.CodeAlreadyExists, wantMsg: "username is already taken"},
			{name: "duplicate in other case", req: ok("TAKEN"), wantCode: connect.CodeAlreadyExists},
			{name: "too short", req: ok("ab"), wantCode: connect.CodeInvalidArgument, wantMsg: "username must be 3 to 32 characters, got 2"},
			{name: "too long", req: ok(strings.Repeat("d", 33)), wantCode: connect.CodeInvalidArgument},
			{name: "space", req: ok("ann smith"), wantCode: connect.CodeInvalidArgument, wantMsg: `username may contain only letters a-z, digits and _ . -, got ' '`},
			{name: "kelvin sign", req: ok("\u212Aate"), wantCode: connect.CodeInvalidArgument},
			{name: "short password", req: with(func(r *accountv1.RegisterRequest) { r.Password = "1234567" }), wantCode: connect.CodeInvalidArgument, wantMsg: "password must be 8 to 256 bytes, got 7"},
			{name: "long password", req: with(func(r *accountv1.RegisterRequest) { r.Password = strings.Repeat("p", 257) }), wantCode: connect.CodeInvalidArgument},
			{name: "long display name", req: with(func(r *accountv1.RegisterRequest) { r.DisplayName = strings.Repeat("é", 65) }), wantCode: connect.CodeInvalidArgument, wantMsg: "display name must be at most 64 characters, got 65"},
			{name: "64-character display name", req: with(func(r *accountv1.RegisterRequest) { r.Username, r.DisplayName = "eve", strings.Repeat("é", 64) }), wantUsername: "eve"},
			{name: "control character", req: with(func(r *accountv1.RegisterRequest) { r.DisplayName = "a\nb" }), wantCode: connect.CodeInvalidArgument},
			{name: "long device name", req: with(func(r *accountv1.RegisterRequest) { r.DeviceName = strings.Repeat("x", 65) }), wantCode: connect.CodeInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := e.client.Register(context.Background(), tt.req)
				if tt.wantCode != 0 {
					wantCode(t, err, tt.wantCode, tt.wantMsg)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if res.GetUser().GetUsername() != tt.wantUsername || res.GetUser().GetDisplayName() != tt.req.GetDisplayName() {
					t.Fatalf("user = %v, want username %q", res.GetUser(), tt.wantUsername)
				}
				// The tokens work and name the new user and device.
				id, err := e.signer.Verifier().Verify(res.GetTokens().GetAccessToken())
				if err != nil || id.UserID != res.GetUser().GetUserId() || id.DeviceID != res.GetDeviceId() {
					t.Fatalf("access token identity %+v, %v", id, err)
				}
				got, err := e.client.GetUser(as(res.GetTokens().GetAccessToken()), &accountv1.GetUserRequest{UserId: res.GetUser().GetUserId()})
				if err != nil || got.GetUser().GetUsername() != tt.wantUsername {
					t.Fatalf("GetUser after register: %v, %v", got, err)
				}
			})
		}

		// A failed registration stores nothing: the name is still free.
		e.register(t, "someone")
	})
}

func TestLogin(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		reg := e.register(t, "ann")
		tests := []struct {
			name     string
			req      *accountv1.LoginRequest
			wantCode connect.Code
			wantMsg  string
		}{
			{name: "valid", req: &accountv1.LoginRequest{Username: "ann", Password: "password-ann", DeviceName: "laptop"}},
			{name: "username in other case", req: &accountv1.LoginRequest{Username: "ANN", Password: "password-ann"}},
			{name: "wrong password", req: &accountv1.LoginRequest{Username: "ann", Password: "password-bob"}, wantCode: connect.CodeUnauthenticated, wantMsg: "invalid username or password"},
			{name: "unknown user", req: &accountv1.LoginRequest{Username: "bob", Password: "password-bob"}, wantCode: connect.CodeUnauthenticated, wantMsg: "invalid username or password"},
			{name: "impossible username", req: &accountv1.LoginRequest{Username: "a n", Password: "password-ann"}, wantCode: connect.CodeUnauthenticated, wantMsg: "invalid username or password"},
			{name: "no password", req: &accountv1.LoginRequest{Username: "ann"}, wantCode: connect.CodeInvalidArgument},
			{name: "no username", req: &accountv1.LoginRequest{Password: "password-ann"}, wantCode: connect.CodeInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := e.client.Login(context.Background(), tt.req)
				if tt.wantCode != 0 {
					wantCode(t, err, tt.wantCode, tt.wantMsg)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if res.GetUser().GetUserId() != reg.GetUser().GetUserId() {
					t.Fatalf("logged in as %v, want %v", res.GetUser(), reg.GetUser())
				}
				if res.GetDeviceId() == reg.GetDeviceId() {
					t.Fatal("login reused the registration's device")
				}
				id, err := e.signer.Verifier().Verify(res.GetTokens().GetAccessToken())
				if err != nil || id != (auth.Identity{UserID: reg.GetUser().GetUserId(), DeviceID: res.GetDeviceId()}) {
					t.Fatalf("access token identity %+v, %v", id, err)
				}
			})
		}
		devices, err := e.client.ListDevices(as(reg.GetTokens().GetAccessToken()), &accountv1.ListDevicesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(devices.GetDevices()); n != 3 {
			t.Fatalf("%d devices after register and two logins, want 3", n)
		}
	})
}

func TestRefreshToken(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		reg := e.register(t, "ann")
		refresh := func(token string) (*accountv1.Tokens, error) {
			res, err := e.client.RefreshToken(context.Background(), &accountv1.RefreshTokenRequest{RefreshToken: token})
			return res.GetTokens(), err
		}

		t.Run("rotates", func(t *testing.T) {
			first := reg.GetTokens().GetRefreshToken()
			second, err := refresh(first)
			if err != nil {
				t.Fatal(err)
			}
			if second.GetRefreshToken() == first {
				t.Fatal("refresh returned the same refresh token")
			}
			id, err := e.signer.Verifier().Verify(second.GetAccessToken())
			if err != nil || id.DeviceID != reg.GetDeviceId() {
				t.Fatalf("new access token names %+v (%v), want device %s", id, err, reg.GetDeviceId())
			}
			_, err = refresh(first)
			wantCode(t, err, connect.CodeUnauthenticated, "invalid refresh token")
			if _, err := refresh(second.GetRefreshToken()); err != nil {
				t.Fatalf("refresh with the rotated token: %v", err)
			}
		})

		t.Run("one winner when used twice at once", func(t *testing.T) {
			token := e.register(t, "bob").GetTokens().GetRefreshToken()
			var (
				wg        sync.WaitGroup
				mu        sync.Mutex
				successes int
			)
			for range 5 {
				wg.Go(func() {
					if _, err := refresh(token); err == nil {
						mu.Lock()
						successes++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if successes != 1 {
				t.Fatalf("%d concurrent refreshes with one token succeeded, want 1", successes)
			}
		})

		t.Run("expired", func(t *testing.T) {
			token := e.register(t, "carol").GetTokens().GetRefreshToken()
			e.clock.Advance(31 * 24 * time.Hour)
			defer e.clock.Advance(-31 * 24 * time.Hour)
			_, err := refresh(token)
			wantCode(t, err, connect.CodeUnauthenticated, "refresh token expired")
		})

		t.Run("unknown", func(t *testing.T) {
			tok, _ := auth.NewRefreshToken()
			_, err := refresh(tok)
			wantCode(t, err, connect.CodeUnauthenticated, "invalid refresh token")
		})

		t.Run("empty", func(t *testing.T) {
			_, err := refresh("")
			wantCode(t, err, connect.CodeInvalidArgument, "refresh token is required")
		})
	})
}

func TestLogout(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		reg := e.register(t, "ann")
		other, err := e.client.Login(context.Background(), &accountv1.LoginRequest{Username: "ann", Password: "password-ann"})
		if err != nil {
			t.Fatal(err)
		}
		ctx := as(reg.GetTokens().GetAccessToken())

		if _, err := e.client.Logout(ctx, &accountv1.LogoutRequest{}); err != nil {
			t.Fatal(err)
		}
		want := auth.Identity{UserID: reg.GetUser().GetUserId(), DeviceID: reg.GetDeviceId()}
		if got := e.revoker.calls(); len(got) != 1 || got[0] != want {
			t.Fatalf("revoker got %+v, want [%+v]", got, want)
		}
		_, err = e.client.RefreshToken(context.Background(), &accountv1.RefreshTokenRequest{RefreshToken: reg.GetTokens().GetRefreshToken()})
		wantCode(t, err, connect.CodeUnauthenticated, "refresh token revoked: the device logged out")

		// The other device is still logged in, and no longer lists this one.
		if _, err := e.client.RefreshToken(context.Background(), &accountv1.RefreshTokenRequest{RefreshToken: other.GetTokens().GetRefreshToken()}); err != nil {
			t.Fatalf("other device's refresh: %v", err)
		}
		devices, err := e.client.ListDevices(as(other.GetTokens().GetAccessToken()), &accountv1.ListDevicesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(devices.GetDevices()) != 1 || devices.GetDevices()[0].GetDeviceId() != other.GetDeviceId() {
			t.Fatalf("devices after logout: %v, want only %s", devices.GetDevices(), other.GetDeviceId())
		}

		// Logout is idempotent, and reports a failure to close sessions so the
		// client retries.
		if _, err := e.client.Logout(ctx, &accountv1.LogoutRequest{}); err != nil {
			t.Fatalf("second logout: %v", err)
		}
		e.revoker.fail(context.DeadlineExceeded)
		_, err = e.client.Logout(ctx, &accountv1.LogoutRequest{})
		wantCode(t, err, connect.CodeUnavailable, "")

		_, err = e.client.Logout(context.Background(), &accountv1.LogoutRequest{})
		wantCode(t, err, connect.CodeUnauthenticated, "missing credentials")
	})
}

func TestAccessTokens(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		reg := e.register(t, "ann")
		id := auth.Identity{UserID: reg.GetUser().GetUserId(), DeviceID: reg.GetDeviceId()}
		expired, _, err := e.signer.Issue(id, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		other, _ := auth.NewSigner(make([]byte, 32), 0)
		forged, _, _ := other.Issue(id, time.Now())
		valid := reg.GetTokens().GetAccessToken()
		i := len(valid) / 3 // inside the payload
		c := "A"
		if valid[i] == 'A' {
			c = "B"
		}
		tampered := valid[:i] + c + valid[i+1:]

		tests := []struct {
			name    string
			ctx     context.Context
			wantMsg string
		}{
			{"valid", as(valid), ""},
			{"expired", as(expired), "access token expired"},
			{"tampered", as(tampered), "invalid access token"},
			{"other key", as(forged), "invalid access token"},
			{"missing", context.Background(), "missing credentials"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := e.client.GetUser(tt.ctx, &accountv1.GetUserRequest{UserId: id.UserID})
				if tt.wantMsg == "" {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				wantCode(t, err, connect.CodeUnauthenticated, tt.wantMsg)
			})
		}
	})
}
