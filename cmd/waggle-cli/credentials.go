package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
)

// refreshMargin is how long before its expiry an access token is renewed,
// so it does not expire on the way to the server.
const refreshMargin = 30 * time.Second

// credentials hands out a valid access token for a stored profile,
// refreshing it with the refresh token (and saving the new pair) when it
// has expired or the server rejects it.
type credentials struct {
	path     string
	accounts accountv1connect.AccountServiceClient
	now      func() time.Time

	mu   sync.Mutex
	prof *profile
}

// token returns an access token that is valid for at least refreshMargin.
func (c *credentials) token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now().Add(refreshMargin).Before(c.prof.AccessExpire) {
		return c.prof.AccessToken, nil
	}
	if err := c.refresh(ctx); err != nil {
		return "", err
	}
	return c.prof.AccessToken, nil
}

// renew replaces an access token the server rejected, unless another call
// has replaced it already.
func (c *credentials) renew(ctx context.Context, rejected string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prof.AccessToken != rejected {
		return c.prof.AccessToken, nil
	}
	if err := c.refresh(ctx); err != nil {
		return "", err
	}
	return c.prof.AccessToken, nil
}

// refresh trades the refresh token for a new pair and saves it. Refresh
// tokens are single use: when another waggle-cli process with the same
// profile has just rotated it, the stored file holds the new pair, which
// is used instead. c.mu is held.
func (c *credentials) refresh(ctx context.Context) error {
	res, err := c.accounts.RefreshToken(ctx, &accountv1.RefreshTokenRequest{RefreshToken: c.prof.RefreshToken})
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		if stored, lerr := loadProfile(c.path); lerr == nil && stored.UserID == c.prof.UserID &&
			stored.RefreshToken != c.prof.RefreshToken {
			c.prof = stored
			if c.now().Add(refreshMargin).Before(stored.AccessExpire) {
				return nil
			}
			res, err = c.accounts.RefreshToken(ctx, &accountv1.RefreshTokenRequest{RefreshToken: stored.RefreshToken})
		}
	}
	if err != nil {
		return fmt.Errorf("refresh the access token: %w", err)
	}
	t := res.GetTokens()
	c.prof.AccessToken, c.prof.AccessExpire = t.GetAccessToken(), t.GetAccessTokenExpireTime().AsTime()
	c.prof.RefreshToken, c.prof.RefreshExpire = t.GetRefreshToken(), t.GetRefreshTokenExpireTime().AsTime()
	return saveProfile(c.path, c.prof)
}

// interceptor authorizes unary calls with the access token. A call the
// server answers with UNAUTHENTICATED (an expired token, or a server that
// restarted with a new signing key) is repeated once with a refreshed one.
func (c *credentials) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			tok, err := c.token(ctx)
			if err != nil {
				return nil, err
			}
			req.Header().Set("Authorization", "Bearer "+tok)
			res, err := next(ctx, req)
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				return res, err
			}
			if tok, err = c.renew(ctx, tok); err != nil {
				return nil, err
			}
			req.Header().Set("Authorization", "Bearer "+tok)
			return next(ctx, req)
		}
	}
}
