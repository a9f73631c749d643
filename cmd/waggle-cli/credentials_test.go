package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
)

// fakeAccounts issues numbered token pairs, accepts only the newest
// access token and rotates refresh tokens like the real service.
type fakeAccounts struct {
	accountv1connect.UnimplementedAccountServiceHandler
	mu        sync.Mutex
	n         int
	access    string
	refresh   string
	refreshes int
	display   string // the display name GetUser answers
}

func (f *fakeAccounts) RefreshToken(_ context.Context, req *accountv1.RefreshTokenRequest) (*accountv1.RefreshTokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetRefreshToken() != f.refresh {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("invalid refresh token"))
	}
	f.refreshes++
	f.n++
	f.access, f.refresh = fmt.Sprintf("access-%d", f.n), fmt.Sprintf("refresh-%d", f.n)
	return &accountv1.RefreshTokenResponse{Tokens: &accountv1.Tokens{
		AccessToken: f.access, AccessTokenExpireTime: timestamppb.New(time.Now().Add(15 * time.Minute)),
		RefreshToken: f.refresh, RefreshTokenExpireTime: timestamppb.New(time.Now().Add(24 * time.Hour))}}, nil
}

func (f *fakeAccounts) GetUser(ctx context.Context, req *accountv1.GetUserRequest) (*accountv1.GetUserResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if auth := callHeader(ctx).Get("Authorization"); auth != "Bearer "+f.access {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("bad token %q", auth))
	}
	return &accountv1.GetUserResponse{User: &accountv1.User{UserId: req.GetUserId(), Username: "alice", DisplayName: f.display}}, nil
}

type headerKey struct{}

func callHeader(ctx context.Context) http.Header { return ctx.Value(headerKey{}).(http.Header) }

// serveAccounts runs f over h2c, as Waggle serves.
func serveAccounts(t *testing.T, f *fakeAccounts) string {
	t.Helper()
	path, h := accountv1connect.NewAccountServiceHandler(f, connect.WithInterceptors(connect.UnaryInterceptorFunc(
		func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				return next(context.WithValue(ctx, headerKey{}, req.Header()), req)
			}
		})))
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// storedLogin writes a profile holding the fake's current pair, with the
// access token expiring at expire.
func storedLogin(t *testing.T, f *fakeAccounts, server string, expire time.Time) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "alice.json")
	f.mu.Lock()
	p := &profile{Server: server, UserID: "u1", Username: "alice", DeviceID: "d1", AccessToken: f.access, AccessExpire: expire,
		RefreshToken: f.refresh, RefreshExpire: time.Now().Add(time.Hour)}
	f.mu.Unlock()
	if err := saveProfile(path, p); err != nil {
		t.Fatal(err)
	}
	return path
}

func whoami(t *testing.T, path string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--config", path, "whoami", "--json"},
		env{getenv: envOf(nil), stdin: strings.NewReader(""), stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

func TestExpiredAccessTokenIsRefreshedAndSaved(t *testing.T) {
	f := &fakeAccounts{access: "access-0", refresh: "refresh-0"}
	server := serveAccounts(t, f)
	path := storedLogin(t, f, server, time.Now().Add(-time.Minute))
	code, out, errOut := whoami(t, path)
	if code != exitOK || !strings.Contains(out, `"username": "alice"`) {
		t.Fatalf("whoami = %d, %s %s", code, out, errOut)
	}
	p, err := loadProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.AccessToken != "access-1" || p.RefreshToken != "refresh-1" || f.refreshes != 1 {
		t.Fatalf("stored %s/%s after %d refreshes, want the new pair after one", p.AccessToken, p.RefreshToken, f.refreshes)
	}
	// A valid token is used as is.
	if code, _, _ := whoami(t, path); code != exitOK || f.refreshes != 1 {
		t.Fatalf("second whoami = %d after %d refreshes, want no new refresh", code, f.refreshes)
	}
}

func TestRejectedAccessTokenIsRenewedOnce(t *testing.T) {
	f := &fakeAccounts{access: "access-0", refresh: "refresh-0"}
	server := serveAccounts(t, f)
	path := storedLogin(t, f, server, time.Now().Add(time.Hour))
	f.access = "the server restarted with a new key"
	if code, out, errOut := whoami(t, path); code != exitOK || f.refreshes != 1 {
		t.Fatalf("whoami = %d after %d refreshes: %s %s; want success after one", code, f.refreshes, out, errOut)
	}
}

func TestRotationByAnotherProcessIsAdopted(t *testing.T) {
	f := &fakeAccounts{access: "access-0", refresh: "refresh-0"}
	server := serveAccounts(t, f)
	path := storedLogin(t, f, server, time.Now().Add(-time.Minute))
	accounts := accountv1connect.NewAccountServiceClient(newHTTPClient(), server)
	load := func() *credentials {
		p, err := loadProfile(path)
		if err != nil {
			t.Fatal(err)
		}
		return &credentials{path: path, accounts: accounts, now: time.Now, prof: p}
	}
	c, other := load(), load()
	// Another process refreshes first and saves the new pair.
	if _, err := other.token(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok, err := c.token(context.Background())
	if err != nil || tok != "access-1" {
		t.Fatalf("token = %q, %v; want the other process's access-1", tok, err)
	}
}

func TestRevokedLoginFailsWithUnauthenticated(t *testing.T) {
	f := &fakeAccounts{access: "access-0", refresh: "refresh-0"}
	server := serveAccounts(t, f)
	path := storedLogin(t, f, server, time.Now().Add(-time.Minute))
	f.refresh = "revoked"
	code, _, errOut := whoami(t, path)
	var e map[string]errorJSON
	if err := json.Unmarshal([]byte(errOut), &e); err != nil {
		t.Fatalf("stderr %q is not a JSON error: %v", errOut, err)
	}
	if code != exitFailed || e["error"].Code != "unauthenticated" {
		t.Fatalf("whoami = %d, %s; want exit 1 with code unauthenticated", code, errOut)
	}
}

func TestProfilePath(t *testing.T) {
	tests := []struct {
		g    globals
		env  map[string]string
		want string
		err  bool
	}{
		{g: globals{profile: "default"}, env: map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/h"}, want: "/x/waggle-cli/default.json"},
		{g: globals{profile: "bob"}, env: map[string]string{"HOME": "/h"}, want: "/h/.config/waggle-cli/bob.json"},
		{g: globals{profile: "bob", config: "/tmp/c.json"}, env: map[string]string{"HOME": "/h"}, want: "/tmp/c.json"},
		{g: globals{profile: "../etc"}, env: map[string]string{"HOME": "/h"}, err: true},
		{g: globals{profile: "default"}, env: nil, err: true},
	}
	for _, tt := range tests {
		got, err := profilePath(tt.g, envOf(tt.env))
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("profilePath(%+v, %v) = %q, %v; want %q (error %v)", tt.g, tt.env, got, err, tt.want, tt.err)
		}
	}
}

func TestProfileFileIsPrivateAndRoundTrips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "p.json")
	want := &profile{Server: "http://s", UserID: "u", Username: "n", DeviceID: "d", AccessToken: "a",
		AccessExpire: time.Unix(100, 0).UTC(), RefreshToken: "r", RefreshExpire: time.Unix(200, 0).UTC()}
	if err := saveProfile(path, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := loadProfile(path)
	if err != nil || *got != *want {
		t.Fatalf("loaded %+v, %v; want %+v", got, err, want)
	}
	if _, err := loadProfile(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, errNotLoggedIn) {
		t.Fatalf("missing file: %v, want errNotLoggedIn", err)
	}
}
