package account_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/auth"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/sqlitetest"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/services/account"
	"github.com/wagglechat/waggle/sqlite"
)

// clock is the service's injected time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// revoker records the devices Logout asked to disconnect.
type revoker struct {
	mu      sync.Mutex
	revoked []auth.Identity
	err     error
}

func (r *revoker) RevokeDevice(_ context.Context, id auth.Identity) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked = append(r.revoked, id)
	return r.err
}

func (r *revoker) calls() []auth.Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]auth.Identity(nil), r.revoked...)
}

func (r *revoker) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

type env struct {
	client  accountv1connect.AccountServiceClient
	srv     *httptest.Server
	signer  *auth.Signer
	clock   *clock
	revoker *revoker
}

// stores are the storage backends for the service, each made empty: every
// test runs on each (storetest.Run), so a backend added here is covered by
// them all.
var stores = map[string]func(t testing.TB) account.Store{
	"postgres": func(t testing.TB) account.Store { return postgres.NewAccountStore(pgtest.New(t)) },
	"sqlite":   func(t testing.TB) account.Store { return sqlite.NewAccountStore(sqlitetest.New(t)) },
}

// newEnv serves AccountService on store over HTTP/2, behind the auth
// interceptor with Waggle's default policy.
func newEnv(t *testing.T, store account.Store) *env {
	t.Helper()
	return newEnvWith(t, store, account.Limits{})
}

// newEnvWith is newEnv with limits.
func newEnvWith(t *testing.T, store account.Store, limits account.Limits) *env {
	t.Helper()
	signer, err := auth.NewSigner(bytes.Repeat([]byte{7}, 32), 0)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{signer: signer, clock: &clock{now: time.Now()}, revoker: &revoker{}}
	svc := account.New(store, signer, slog.New(slog.NewTextHandler(io.Discard, nil)), account.Options{
		// Cheap parameters keep the tests fast; production uses the default.
		Passwords: auth.NewPasswords(auth.PasswordParams{Memory: 64, Time: 1, Threads: 1}, 0),
		Revoker:   e.revoker,
		Now:       e.clock.Now,
		Limits:    limits,
	})
	ic, err := auth.NewInterceptor(auth.InterceptorConfig{Verifier: signer.Verifier(), Policy: auth.DefaultPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(accountv1connect.NewAccountServiceHandler(svc, connect.WithInterceptors(ic)))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e.srv = srv
	e.client = accountv1connect.NewAccountServiceClient(srv.Client(), srv.URL)
	return e
}

// from returns a client whose calls come from ip, a loopback address other
// than 127.0.0.1 to be another source address.
func (e *env) from(ip string) accountv1connect.AccountServiceClient {
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext
	return accountv1connect.NewAccountServiceClient(&http.Client{Transport: tr}, e.srv.URL)
}

// as returns a context whose calls carry the access token.
func as(token string) context.Context {
	ctx, call := connect.NewClientContext(context.Background())
	call.RequestHeader().Set("Authorization", "Bearer "+token)
	return ctx
}

func (e *env) register(t *testing.T, username string) *accountv1.RegisterResponse {
	t.Helper()
	res, err := e.client.Register(context.Background(), &accountv1.RegisterRequest{
		Username: username, Password: "password-" + username, DisplayName: "User " + username, DeviceName: "phone",
	})
	if err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	return res
}

// wantCode fails unless err is a connect error with code and, if msg is not
// empty, exactly that message.
func wantCode(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != code || (msg != "" && cerr.Message() != msg) {
		t.Fatalf("error = %v, want %v %q", err, code, msg)
	}
}
