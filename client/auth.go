package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/contact/v1/contactv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
)

// Tokens holds a device's access and refresh tokens and refreshes the access
// token shortly before it expires. Its Token method is a Config.Token.
type Tokens struct {
	accounts accountv1connect.AccountServiceClient
	// OnRefresh, if set, is called with every new refresh token so the app
	// can store it (refresh tokens rotate on every use).
	OnRefresh func(refreshToken string)

	mu        sync.Mutex
	access    string
	expire    time.Time
	refresh   string
	userID    string
	deviceID  string
	refreshed chan struct{} // closed when an in-flight refresh ends
	// A refresh refused with a RetryInfo is not tried again before retryAt.
	retryAt time.Time
	refusal error
}

// Login logs a new device in.
func Login(ctx context.Context, accounts accountv1connect.AccountServiceClient, username, password, deviceName string) (*Tokens, error) {
	res, err := accounts.Login(ctx, &accountv1.LoginRequest{Username: username, Password: password, DeviceName: deviceName})
	if err != nil {
		return nil, err
	}
	return newTokens(accounts, res.GetUser().GetUserId(), res.GetDeviceId(), res.GetTokens()), nil
}

// Register creates a user and logs its first device in.
func Register(ctx context.Context, accounts accountv1connect.AccountServiceClient, req *accountv1.RegisterRequest) (*Tokens, error) {
	res, err := accounts.Register(ctx, req)
	if err != nil {
		return nil, err
	}
	return newTokens(accounts, res.GetUser().GetUserId(), res.GetDeviceId(), res.GetTokens()), nil
}

// Resume continues a device from a stored refresh token; the first Token
// call refreshes.
func Resume(accounts accountv1connect.AccountServiceClient, refreshToken string) *Tokens {
	return &Tokens{accounts: accounts, refresh: refreshToken}
}

func newTokens(accounts accountv1connect.AccountServiceClient, user, device string, t *accountv1.Tokens) *Tokens {
	return &Tokens{accounts: accounts, userID: user, deviceID: device, access: t.GetAccessToken(),
		expire: t.GetAccessTokenExpireTime().AsTime(), refresh: t.GetRefreshToken()}
}

// refreshBefore is how long before expiry the access token is renewed, so a
// token is never sent just as it lapses.
const refreshBefore = time.Minute

// Token returns a valid access token, refreshing it if it expires within a
// minute. Concurrent callers share one refresh. A refresh the server
// refuses with a RetryInfo (rate limited) is tried again once its delay
// has passed, if ctx allows that long.
func (t *Tokens) Token(ctx context.Context) (string, error) {
	for {
		t.mu.Lock()
		if t.access != "" && time.Until(t.expire) > refreshBefore {
			defer t.mu.Unlock()
			return t.access, nil
		}
		if wait := t.refreshed; wait != nil {
			t.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		if retryAt, refusal := t.retryAt, t.refusal; time.Now().Before(retryAt) {
			t.mu.Unlock()
			// The server said when a refresh can succeed: wait for it,
			// unless ctx ends first.
			if deadline, ok := ctx.Deadline(); ok && deadline.Before(retryAt) {
				return "", fmt.Errorf("refresh token: %w", refusal)
			}
			select {
			case <-time.After(time.Until(retryAt)):
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		done := make(chan struct{})
		t.refreshed = done
		refresh := t.refresh
		t.mu.Unlock()

		// Not the caller's context: once the server rotated the token, losing
		// the answer to a cancelled caller would leave only a dead token.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		res, err := t.accounts.RefreshToken(rctx, &accountv1.RefreshTokenRequest{RefreshToken: refresh})
		cancel()
		t.mu.Lock()
		t.refreshed = nil
		close(done)
		if err != nil {
			if delay, ok := RetryDelay(err); ok {
				t.retryAt, t.refusal = time.Now().Add(delay), err
				t.mu.Unlock()
				continue
			}
			t.mu.Unlock()
			return "", fmt.Errorf("refresh token: %w", err)
		}
		nt := res.GetTokens()
		t.access, t.expire, t.refresh = nt.GetAccessToken(), nt.GetAccessTokenExpireTime().AsTime(), nt.GetRefreshToken()
		onRefresh := t.OnRefresh
		t.mu.Unlock()
		if onRefresh != nil {
			onRefresh(nt.GetRefreshToken())
		}
	}
}

// RefreshToken returns the current refresh token, for the app to store.
func (t *Tokens) RefreshToken() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refresh
}

// UserID and DeviceID name the logged-in device ("" after Resume until the
// first session's Welcome, which the Client reports).
func (t *Tokens) UserID() string   { t.mu.Lock(); defer t.mu.Unlock(); return t.userID }
func (t *Tokens) DeviceID() string { t.mu.Lock(); defer t.mu.Unlock(); return t.deviceID }

// Interceptor adds the access token to unary and streaming calls.
func (t *Tokens) Interceptor() connect.Interceptor { return bearer{t} }

type bearer struct{ t *Tokens }

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tok, err := b.t.Token(ctx)
		if err != nil {
			return nil, tokenError(err)
		}
		req.Header().Set("Authorization", "Bearer "+tok)
		return next(ctx, req)
	}
}

// tokenError is the error of a call that got no token. A refresh the
// server answered with a code keeps it (a rate limit's resource_exhausted
// and its RetryInfo, an unreachable server's unavailable), and so does the
// caller's own cancellation; anything else is a credential problem.
func tokenError(err error) error {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeUnauthenticated, err)
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if tok, err := b.t.Token(ctx); err == nil {
			conn.RequestHeader().Set("Authorization", "Bearer "+tok)
		}
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// API is every Waggle RPC as a method, authenticated as one device.
type API struct {
	Accounts      accountv1connect.AccountServiceClient
	Contacts      contactv1connect.ContactServiceClient
	Conversations chatv1connect.ConversationServiceClient
	Messages      chatv1connect.MessageServiceClient
	Presence      presencev1connect.PresenceServiceClient
}

// NewAPI returns clients of the services at baseURL that send tokens' access
// token. opts choose the protocol (Connect by default; connect.WithGRPC()).
func NewAPI(httpClient connect.HTTPClient, baseURL string, tokens *Tokens, opts ...connect.ClientOption) *API {
	opts = append(opts, connect.WithInterceptors(tokens.Interceptor()))
	return &API{
		Accounts:      accountv1connect.NewAccountServiceClient(httpClient, baseURL, opts...),
		Contacts:      contactv1connect.NewContactServiceClient(httpClient, baseURL, opts...),
		Conversations: chatv1connect.NewConversationServiceClient(httpClient, baseURL, opts...),
		Messages:      chatv1connect.NewMessageServiceClient(httpClient, baseURL, opts...),
		Presence:      presencev1connect.NewPresenceServiceClient(httpClient, baseURL, opts...),
	}
}

// HTTP2Client is an HTTP client for cleartext (h2c, prior knowledge) and
// TLS HTTP/2 endpoints, as the edge stream needs.
func HTTP2Client() *http.Client {
	t := &http.Transport{ForceAttemptHTTP2: true}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true)
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}
