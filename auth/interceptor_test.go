package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
)

const secret = "internal-secret"

// Procedures of each kind under DefaultPolicy. The test handlers use their
// names with placeholder message types.
const (
	publicProc   = accountv1connect.AccountServiceLoginProcedure
	userProc     = accountv1connect.AccountServiceGetUserProcedure
	internalProc = presencev1connect.SessionRegistryServiceLookupSessionsProcedure
	selfProc     = edgev1connect.EdgeServiceConnectProcedure
	streamProc   = edgev1connect.EdgeServiceSubscribeProcedure
)

// whoami describes what the handler saw in its context.
func whoami(ctx context.Context) *wrapperspb.StringValue {
	id, _ := FromContext(ctx)
	desc := fmt.Sprintf("%s/%s internal=%t", id.UserID, id.DeviceID, IsInternal(ctx))
	if id.SessionID != "" {
		desc += " session=" + id.SessionID
	}
	return wrapperspb.String(desc)
}

// newAuthServer serves one unary handler per policy kind plus a server stream
// and a bidi stream, all behind the interceptor, over HTTP/2.
func newAuthServer(t *testing.T, cfg InterceptorConfig) *httptest.Server {
	t.Helper()
	ic, err := NewInterceptor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opt := connect.WithInterceptors(ic)
	unary := func(ctx context.Context, _ *connect.Request[emptypb.Empty]) (*connect.Response[wrapperspb.StringValue], error) {
		return connect.NewResponse(whoami(ctx)), nil
	}
	mux := http.NewServeMux()
	for _, proc := range []string{publicProc, userProc, internalProc} {
		mux.Handle(proc, connect.NewUnaryHandler(proc, unary, opt))
	}
	mux.Handle(streamProc, connect.NewServerStreamHandler(streamProc,
		func(ctx context.Context, _ *connect.Request[emptypb.Empty], s *connect.ServerStream[wrapperspb.StringValue]) error {
			return s.Send(whoami(ctx))
		}, opt))
	mux.Handle(selfProc, connect.NewBidiStreamHandler(selfProc,
		func(ctx context.Context, s *connect.BidiStream[emptypb.Empty, wrapperspb.StringValue]) error {
			if _, err := s.Receive(); err != nil {
				return err
			}
			return s.Send(whoami(ctx))
		}, opt))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestInterceptorUnary(t *testing.T) {
	signer := newSigner(t, 1)
	srv := newAuthServer(t, InterceptorConfig{Verifier: signer.Verifier(), InternalSecret: secret, Policy: DefaultPolicy()})
	now := time.Now()
	valid := issue(t, signer, alice, now)
	const aliceSeen = "6f1c6a4e-8d51-4a8e-9a0b-3f8f1c2d9e10/0b7e3c1a-2f4d-4e6b-8a9c-1d2e3f4a5b6c"
	internalFor := func(uid, did string) map[string]string {
		return map[string]string{HeaderInternalToken: secret, HeaderUserID: uid, HeaderDeviceID: did}
	}

	tests := []struct {
		name     string
		proc     string
		headers  map[string]string
		want     string
		wantCode connect.Code
		wantMsg  string
	}{
		{name: "public without credentials", proc: publicProc, want: "/ internal=false"},
		{name: "public ignores a bad token", proc: publicProc, headers: map[string]string{"Authorization": "Bearer junk"}, want: "/ internal=false"},
		{name: "user without credentials", proc: userProc, wantCode: connect.CodeUnauthenticated, wantMsg: "missing credentials"},
		{name: "user with bearer", proc: userProc, headers: map[string]string{"Authorization": "Bearer " + valid}, want: aliceSeen + " internal=false"},
		{name: "scheme is case-insensitive", proc: userProc, headers: map[string]string{"Authorization": "bearer " + valid}, want: aliceSeen + " internal=false"},
		{name: "basic scheme", proc: userProc, headers: map[string]string{"Authorization": "Basic YTpi"}, wantCode: connect.CodeUnauthenticated, wantMsg: errBadAuthorization.Error()},
		{name: "bearer without token", proc: userProc, headers: map[string]string{"Authorization": "Bearer "}, wantCode: connect.CodeUnauthenticated, wantMsg: errBadAuthorization.Error()},
		{name: "expired", proc: userProc, headers: map[string]string{"Authorization": "Bearer " + issue(t, signer, alice, now.Add(-time.Hour))}, wantCode: connect.CodeUnauthenticated, wantMsg: "access token expired"},
		{name: "tampered", proc: userProc, headers: map[string]string{"Authorization": "Bearer " + flip(valid, 20)}, wantCode: connect.CodeUnauthenticated, wantMsg: "invalid access token"},
		{name: "wrong key", proc: userProc, headers: map[string]string{"Authorization": "Bearer " + issue(t, newSigner(t, 2), alice, now)}, wantCode: connect.CodeUnauthenticated, wantMsg: "invalid access token"},
		{name: "user via internal", proc: userProc, headers: internalFor("u1", "d1"), want: "u1/d1 internal=true"},
		{name: "user via internal without user", proc: userProc, headers: internalFor("", ""), wantCode: connect.CodeUnauthenticated, wantMsg: errInternalNoUser.Error()},
		{name: "user via internal without device", proc: userProc, headers: internalFor("u1", ""), wantCode: connect.CodeUnauthenticated, wantMsg: errInternalNoUser.Error()},
		{name: "wrong internal secret", proc: userProc, headers: map[string]string{HeaderInternalToken: "guess", HeaderUserID: "u1", HeaderDeviceID: "d1"}, wantCode: connect.CodeUnauthenticated, wantMsg: "invalid internal credential"},
		{name: "wrong internal secret does not fall back to bearer", proc: userProc, headers: map[string]string{HeaderInternalToken: "guess", "Authorization": "Bearer " + valid}, wantCode: connect.CodeUnauthenticated, wantMsg: "invalid internal credential"},
		{name: "user headers without internal token are ignored", proc: userProc, headers: map[string]string{HeaderUserID: "u1", HeaderDeviceID: "d1"}, wantCode: connect.CodeUnauthenticated, wantMsg: "missing credentials"},
		{name: "internal-only as the edge itself", proc: internalProc, headers: map[string]string{HeaderInternalToken: secret}, want: "/ internal=true"},
		{name: "internal-only for a user", proc: internalProc, headers: internalFor("u1", "d1"), want: "u1/d1 internal=true"},
		{name: "internal-only with half an identity", proc: internalProc, headers: internalFor("u1", ""), wantCode: connect.CodeUnauthenticated, wantMsg: errInternalNoUser.Error()},
		{name: "internal-only with a user token", proc: internalProc, headers: map[string]string{"Authorization": "Bearer " + valid}, wantCode: connect.CodePermissionDenied, wantMsg: "procedure is internal-only"},
		{name: "internal-only without credentials", proc: internalProc, wantCode: connect.CodeUnauthenticated, wantMsg: "missing credentials"},
	}
	protocols := map[string][]connect.ClientOption{"connect": nil, "grpc": {connect.WithGRPC()}}
	for protocol, opts := range protocols {
		for _, tt := range tests {
			t.Run(protocol+"/"+tt.name, func(t *testing.T) {
				client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+tt.proc, opts...)
				req := connect.NewRequest(&emptypb.Empty{})
				for k, v := range tt.headers {
					req.Header().Set(k, v)
				}
				res, err := client.CallUnary(context.Background(), req)
				checkResult(t, res, err, tt.want, tt.wantCode, tt.wantMsg)
			})
		}
	}
}

func checkResult(t *testing.T, res *connect.Response[wrapperspb.StringValue], err error, want string, wantCode connect.Code, wantMsg string) {
	t.Helper()
	if wantCode != 0 {
		var cerr *connect.Error
		if !errors.As(err, &cerr) || cerr.Code() != wantCode || cerr.Message() != wantMsg {
			t.Fatalf("error = %v, want %v: %s", err, wantCode, wantMsg)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got := res.Msg.GetValue(); got != want {
		t.Fatalf("handler saw %q, want %q", got, want)
	}
}

func TestInterceptorStreams(t *testing.T) {
	signer := newSigner(t, 1)
	srv := newAuthServer(t, InterceptorConfig{Verifier: signer.Verifier(), InternalSecret: secret, Policy: DefaultPolicy()})
	valid := issue(t, signer, alice, time.Now())

	t.Run("self-authenticating bidi passes without headers", func(t *testing.T) {
		stream := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+selfProc).CallBidiStream(context.Background())
		// The handler may answer and end before the send completes; Send then
		// says io.EOF and Receive has the outcome.
		if err := stream.Send(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		res, err := stream.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetValue() != "/ internal=false" {
			t.Fatalf("handler saw %q", res.GetValue())
		}
		_ = stream.CloseRequest()
		_ = stream.CloseResponse()
	})

	tests := []struct {
		name     string
		authz    string
		want     string
		wantCode connect.Code
		wantMsg  string
	}{
		{name: "server stream with bearer", authz: "Bearer " + valid, want: alice.UserID + "/" + alice.DeviceID + " internal=false"},
		{name: "server stream without credentials", wantCode: connect.CodeUnauthenticated, wantMsg: "missing credentials"},
		{name: "server stream with a tampered token", authz: "Bearer " + flip(valid, 20), wantCode: connect.CodeUnauthenticated, wantMsg: "invalid access token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := connect.NewRequest(&emptypb.Empty{})
			if tt.authz != "" {
				req.Header().Set("Authorization", tt.authz)
			}
			got, err := firstOfServerStream(context.Background(), srv, req)
			var res *connect.Response[wrapperspb.StringValue]
			if err == nil {
				res = connect.NewResponse(got)
			}
			checkResult(t, res, err, tt.want, tt.wantCode, tt.wantMsg)
		})
	}
}

// firstOfServerStream calls the server stream and returns its first message.
func firstOfServerStream(ctx context.Context, srv *httptest.Server, req *connect.Request[emptypb.Empty], opts ...connect.ClientOption) (*wrapperspb.StringValue, error) {
	client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+streamProc, opts...)
	stream, err := client.CallServerStream(ctx, req)
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, err
		}
		return nil, io.ErrUnexpectedEOF
	}
	return stream.Msg(), nil
}

func TestInternalClientInterceptor(t *testing.T) {
	signer := newSigner(t, 1)
	srv := newAuthServer(t, InterceptorConfig{Verifier: signer.Verifier(), InternalSecret: secret, Policy: DefaultPolicy()})
	asAlice := WithIdentity(context.Background(), alice)
	aliceSeen := alice.UserID + "/" + alice.DeviceID + " internal=true"

	tests := []struct {
		name     string
		secret   string
		ctx      context.Context
		proc     string
		want     string
		wantCode connect.Code
	}{
		{name: "acts for the context's user", secret: secret, ctx: asAlice, proc: userProc, want: aliceSeen},
		{name: "passes the edge session along", secret: secret, proc: userProc, want: aliceSeen + " session=s-1",
			ctx: WithIdentity(context.Background(), Identity{UserID: alice.UserID, DeviceID: alice.DeviceID, SessionID: "s-1"})},
		{name: "internal-only without a user", secret: secret, ctx: context.Background(), proc: internalProc, want: "/ internal=true"},
		{name: "user procedure needs a user", secret: secret, ctx: context.Background(), proc: userProc, wantCode: connect.CodeUnauthenticated},
		{name: "wrong secret", secret: "guess", ctx: asAlice, proc: userProc, wantCode: connect.CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+tt.proc,
				connect.WithInterceptors(InternalClientInterceptor(tt.secret)))
			res, err := client.CallUnary(tt.ctx, connect.NewRequest(&emptypb.Empty{}))
			if tt.wantCode != 0 {
				if connect.CodeOf(err) != tt.wantCode {
					t.Fatalf("error = %v, want %v", err, tt.wantCode)
				}
				return
			}
			checkResult(t, res, err, tt.want, 0, "")
		})
	}

	t.Run("streaming call", func(t *testing.T) {
		got, err := firstOfServerStream(asAlice, srv, connect.NewRequest(&emptypb.Empty{}),
			connect.WithInterceptors(InternalClientInterceptor(secret)))
		if err != nil {
			t.Fatal(err)
		}
		if got.GetValue() != aliceSeen {
			t.Fatalf("handler saw %q, want %q", got.GetValue(), aliceSeen)
		}
	})
}

func TestInterceptorWithoutInternalSecret(t *testing.T) {
	srv := newAuthServer(t, InterceptorConfig{Verifier: newSigner(t, 1).Verifier(), Policy: DefaultPolicy()})
	client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+internalProc,
		connect.WithInterceptors(InternalClientInterceptor("anything")))
	_, err := client.CallUnary(context.Background(), connect.NewRequest(&emptypb.Empty{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("internal token on a node without a secret: %v, want Unauthenticated", err)
	}
	if _, err := NewInterceptor(InterceptorConfig{}); err == nil {
		t.Fatal("NewInterceptor without a verifier succeeded")
	}
}

func TestPolicyInternalService(t *testing.T) {
	tests := []struct {
		service string
		want    bool
	}{
		{presencev1connect.SessionRegistryServiceName, true},
		{"waggle.chat.v1.DeliveryService", true},
		{"waggle.chat.v1.RelationService", true},
		{accountv1connect.AccountServiceName, false}, // some of its procedures are public
		{edgev1connect.EdgeServiceName, false},
		{presencev1connect.PresenceServiceName, false},
	}
	for _, tt := range tests {
		if got := DefaultPolicy().InternalService(tt.service); got != tt.want {
			t.Errorf("InternalService(%q) = %t, want %t", tt.service, got, tt.want)
		}
	}
}
