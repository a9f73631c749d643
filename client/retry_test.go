package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
)

// refused is a rate limit's refusal: retry after delay.
func refused(delay time.Duration) error {
	err := connect.NewError(connect.CodeResourceExhausted, errors.New("too many token refreshes from this address"))
	d, _ := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	err.AddDetail(d)
	return err
}

func TestRetryDelay(t *testing.T) {
	other := connect.NewError(connect.CodeUnavailable, errors.New("down"))
	d, _ := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	other.AddDetail(d)
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"refused", refused(3 * time.Second), 3 * time.Second, true},
		{"wrapped", errors.Join(errors.New("token"), refused(time.Second)), time.Second, true},
		{"exhausted without RetryInfo", connect.NewError(connect.CodeResourceExhausted, errors.New("full")), 0, false},
		{"another code", other, 0, false},
		{"no error", nil, 0, false},
	}
	for _, tt := range tests {
		if got, ok := RetryDelay(tt.err); got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: RetryDelay() = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

// refresher refuses the first refresh with a RetryInfo and records when
// each refresh came.
type refresher struct {
	accountv1connect.AccountServiceClient
	delay time.Duration

	mu    sync.Mutex
	calls []time.Time
}

func (r *refresher) RefreshToken(context.Context, *accountv1.RefreshTokenRequest) (*accountv1.RefreshTokenResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, time.Now())
	if len(r.calls) == 1 {
		return nil, refused(r.delay)
	}
	return &accountv1.RefreshTokenResponse{Tokens: &accountv1.Tokens{AccessToken: "access",
		AccessTokenExpireTime: timestamppb.New(time.Now().Add(time.Hour)), RefreshToken: "refresh-2"}}, nil
}

func (r *refresher) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls...)
}

func TestTokenWaitsOutARefusedRefresh(t *testing.T) {
	r := &refresher{delay: 300 * time.Millisecond}
	tok, err := Resume(r, "refresh-1").Token(context.Background())
	if err != nil || tok != "access" {
		t.Fatalf("Token() = %q, %v; want the token of the refresh after the delay", tok, err)
	}
	calls := r.times()
	if len(calls) != 2 || calls[1].Sub(calls[0]) < r.delay {
		t.Fatalf("refreshes at %v: want two, the second at least %v after the first", calls, r.delay)
	}
}

func TestTokenDoesNotWaitPastItsContext(t *testing.T) {
	r := &refresher{delay: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Resume(r, "refresh-1").Token(ctx)
	if d, ok := RetryDelay(err); !ok || d != time.Hour {
		t.Fatalf("Token() error %v, want the refusal with its delay", err)
	}
	if n := len(r.times()); n != 1 {
		t.Fatalf("%d refreshes, want 1: the next could not succeed within the context", n)
	}
}

func TestReconnectWaitsForRetryInfo(t *testing.T) {
	const delay = 300 * time.Millisecond
	var (
		mu    sync.Mutex
		calls []time.Time
	)
	// runClient's backoff is at most 10 ms.
	edge, _, stop := runClient(t, Config{
		Token: func(context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, time.Now())
			if len(calls) == 1 {
				return "", refused(delay)
			}
			return "token", nil
		},
	})
	defer stop()
	s := <-edge.streams
	s.accept(t, "")
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[1].Sub(calls[0]) < delay {
		t.Fatalf("sessions tried at %v: want the second at least %v after the refused first", calls, delay)
	}
}

// A unary call whose token refresh was refused says so, with the delay,
// rather than calling the credentials bad.
func TestUnaryCallKeepsARefusedRefresh(t *testing.T) {
	r := &refresher{delay: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	call := Resume(r, "refresh-1").Interceptor().WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
		t.Fatal("called without a token")
		return nil, nil
	})
	_, err := call(ctx, connect.NewRequest(&accountv1.GetUserRequest{}))
	if d, ok := RetryDelay(err); connect.CodeOf(err) != connect.CodeResourceExhausted || !ok || d != time.Hour {
		t.Fatalf("call error %v, want the refusal (resource_exhausted, retry in 1h)", err)
	}
}
