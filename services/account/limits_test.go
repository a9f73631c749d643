package account_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/client"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/internal/storetest"
	"github.com/wagglechat/waggle/services/account"
)

// retryDelay returns the RetryInfo of a refused call, failing the test if
// it has none.
func retryDelay(t *testing.T, err error) time.Duration {
	t.Helper()
	d, ok := client.RetryDelay(err)
	if !ok {
		t.Fatalf("refusal %v carries no RetryInfo", err)
	}
	return d
}

func TestLimitsPerSourceAddress(t *testing.T) {
	ctx := context.Background()
	login := func(username string) func(accountv1connect.AccountServiceClient, int) error {
		return func(c accountv1connect.AccountServiceClient, i int) error {
			name := username
			if name == "" {
				name = fmt.Sprint("user", i)
			}
			_, err := c.Login(ctx, &accountv1.LoginRequest{Username: name, Password: "summer-2026"})
			return err
		}
	}
	register := func(c accountv1connect.AccountServiceClient, i int) error {
		_, err := c.Register(ctx, &accountv1.RegisterRequest{Username: fmt.Sprintf("new%d", i), Password: "password-new"})
		return err
	}
	tests := []struct {
		name        string
		limits      account.Limits
		calls       int
		call        func(c accountv1connect.AccountServiceClient, i int) error
		wantRefused int
		perMinute   int
	}{
		{"guesses at one username", account.Limits{}, 15, login("ann"), 5, account.DefaultLimits.Login},
		{"one password over many usernames", account.Limits{}, 40, login(""), 10, account.DefaultLimits.LoginAddress}, // "": user0, user1, ...
		{"registrations", account.Limits{Register: 3}, 5, register, 2, 3},
		{"refreshes", account.Limits{Refresh: 3}, 5, func(c accountv1connect.AccountServiceClient, i int) error {
			_, err := c.RefreshToken(ctx, &accountv1.RefreshTokenRequest{RefreshToken: "not-a-token"})
			return err
		}, 2, 3},
		{"no limit", account.Limits{Register: -1}, 15, register, 0, 0},
	}
	for _, tt := range tests {
		// Each case on fresh stores.
		t.Run(tt.name, func(t *testing.T) {
			storetest.Run(t, stores, func(t *testing.T, store account.Store) {
				e := newEnvWith(t, store, tt.limits)
				e.register(t, "ann")
				from := e.from("127.0.0.2")
				refused := 0
				for i := range tt.calls {
					err := tt.call(from, i)
					if connect.CodeOf(err) != connect.CodeResourceExhausted {
						continue
					}
					refused++
					// The bucket refills one call per minute/perMinute.
					if d := retryDelay(t, err); d <= 0 || d > time.Minute/time.Duration(tt.perMinute) {
						t.Errorf("retry delay %v, want within a refill (%v)", d, time.Minute/time.Duration(tt.perMinute))
					}
				}
				if refused != tt.wantRefused {
					t.Fatalf("%d of %d calls refused, want %d", refused, tt.calls, tt.wantRefused)
				}
				if err := tt.call(e.from("127.0.0.3"), tt.calls); connect.CodeOf(err) == connect.CodeResourceExhausted {
					t.Fatalf("another address is limited too: %v", err)
				}
			})
		})
	}
}

// Guesses at a username from one address do not refuse its user logging in
// from another: nobody can lock a user out.
func TestGuessesElsewhereDoNotLockTheUserOut(t *testing.T) {
	storetest.Run(t, stores, func(t *testing.T, store account.Store) {
		e := newEnv(t, store)
		e.register(t, "ann")
		attacker := e.from("127.0.0.2")
		var err error
		for i := 0; connect.CodeOf(err) != connect.CodeResourceExhausted; i++ {
			if i == 100 {
				t.Fatal("100 guesses and none refused")
			}
			_, err = attacker.Login(context.Background(), &accountv1.LoginRequest{Username: "ann", Password: fmt.Sprint("guess-", i)})
		}
		if _, err := e.client.Login(context.Background(), &accountv1.LoginRequest{Username: "Ann", Password: "password-ann"}); err != nil {
			t.Fatalf("ann's own login after another address's guesses were refused: %v", err)
		}
	})
}
