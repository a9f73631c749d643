package rpcserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/internal/reflecttest"
	"github.com/wagglechat/waggle/rpcserver"
)

// accounts answers GetUser; special user ids trigger test behaviours.
type accounts struct {
	accountv1connect.UnimplementedAccountServiceHandler
	started chan struct{} // receives when a "slow" call starts
	release chan struct{} // closed to let "slow" calls finish
}

func newAccounts() *accounts {
	return &accounts{started: make(chan struct{}, 1), release: make(chan struct{})}
}

func (a *accounts) GetUser(ctx context.Context, req *accountv1.GetUserRequest) (*accountv1.GetUserResponse, error) {
	name := "small"
	switch req.GetUserId() {
	case "big":
		name = strings.Repeat("x", 4096)
	case "panic":
		panic("boom")
	case "slow":
		a.started <- struct{}{}
		select {
		case <-a.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &accountv1.GetUserResponse{User: &accountv1.User{UserId: req.GetUserId(), DisplayName: name}}, nil
}

type testServer struct {
	*rpcserver.Server
	addr string

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan error
}

// start serves svc on a free loopback port until the test ends.
func start(t *testing.T, cfg rpcserver.Config, svc accountv1connect.AccountServiceHandler) *testServer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	srv, err := rpcserver.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle(accountv1connect.NewAccountServiceHandler(svc, srv.HandlerOptions()...))
	if srv.Addr() != nil {
		t.Fatal("Addr() before Listen should be nil")
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: srv, addr: srv.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return ts
}

// stop cancels Serve's context and returns what Serve returned.
func (ts *testServer) stop() error {
	var err error
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case err = <-ts.done:
		case <-time.After(20 * time.Second):
			err = errors.New("Serve did not return")
		}
	})
	return err
}

func (ts *testServer) url() string { return "http://" + ts.addr }

func h2cClient(t *testing.T) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func http1Client(t *testing.T) *http.Client {
	var p http.Protocols
	p.SetHTTP1(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func grpcConn(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestProtocols(t *testing.T) {
	ts := start(t, rpcserver.Config{}, newAccounts())
	tests := []struct {
		name   string
		client *http.Client
		opts   []connect.ClientOption
	}{
		{"connect over h2c", h2cClient(t), nil},
		{"connect json over http1", http1Client(t), []connect.ClientOption{connect.WithProtoJSON()}},
		{"grpc over h2c", h2cClient(t), []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web over http1", http1Client(t), []connect.ClientOption{connect.WithGRPCWeb()}},
		{"grpc-web over h2c", h2cClient(t), []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := accountv1connect.NewAccountServiceClient(tt.client, ts.url(), tt.opts...)
			res, err := client.GetUser(context.Background(), &accountv1.GetUserRequest{UserId: "u1"})
			if err != nil {
				t.Fatal(err)
			}
			if res.GetUser().GetUserId() != "u1" {
				t.Errorf("user id = %q, want u1", res.GetUser().GetUserId())
			}
			_, err = client.ListDevices(context.Background(), &accountv1.ListDevicesRequest{})
			if connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Errorf("ListDevices error = %v, want Unimplemented", err)
			}
		})
	}

	t.Run("grpc-go client", func(t *testing.T) {
		client := accountv1.NewAccountServiceClient(grpcConn(t, ts.addr))
		res, err := client.GetUser(context.Background(), &accountv1.GetUserRequest{UserId: "u2"})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetUser().GetUserId() != "u2" {
			t.Errorf("user id = %q, want u2", res.GetUser().GetUserId())
		}
	})
}

func TestReflection(t *testing.T) {
	ts := start(t, rpcserver.Config{}, newAccounts())
	conn := grpcConn(t, ts.addr)
	want := []string{
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"waggle.account.v1.AccountService",
	}

	t.Run("v1", func(t *testing.T) {
		if got := reflecttest.Services(t, conn); !slices.Equal(got, want) {
			t.Errorf("services = %v, want %v", got, want)
		}
		stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer stream.CloseSend()

		// Describing a message needs its file, which must resolve.
		req := &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "waggle.account.v1.User"}}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Errorf("no file descriptor for waggle.account.v1.User: %v", res.GetErrorResponse())
		}
	})

	t.Run("v1alpha", func(t *testing.T) {
		stream, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer stream.CloseSend()
		req := &reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{ListServices: "*"}}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range res.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("services = %v, want %v", got, want)
		}
	})
}

// An internal service is mounted and healthy but not listed.
func TestReflectionHidesInternal(t *testing.T) {
	ts := start(t, rpcserver.Config{Internal: func(service string) bool { return service == accountv1connect.AccountServiceName }}, newAccounts())
	conn := grpcConn(t, ts.addr)
	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
	if got := reflecttest.Services(t, conn); !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
	res, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: accountv1connect.AccountServiceName})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", res.GetStatus(), err)
	}
	if _, err := accountv1.NewAccountServiceClient(conn).GetUser(context.Background(), &accountv1.GetUserRequest{UserId: "u1"}); err != nil {
		t.Errorf("GetUser on the internal service = %v", err)
	}
}

func TestHealth(t *testing.T) {
	ts := start(t, rpcserver.Config{}, newAccounts())
	health := healthpb.NewHealthClient(grpcConn(t, ts.addr))
	check := func(service string) (healthpb.HealthCheckResponse_ServingStatus, codes.Code) {
		res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		return res.GetStatus(), status.Code(err)
	}
	tests := []struct {
		name     string
		serving  bool
		service  string
		want     healthpb.HealthCheckResponse_ServingStatus
		wantCode codes.Code
	}{
		{"server", true, "", healthpb.HealthCheckResponse_SERVING, codes.OK},
		{"mounted service", true, accountv1connect.AccountServiceName, healthpb.HealthCheckResponse_SERVING, codes.OK},
		{"unknown service", true, "waggle.nope.v1.Nope", healthpb.HealthCheckResponse_SERVICE_UNKNOWN, codes.NotFound},
		{"server draining", false, "", healthpb.HealthCheckResponse_NOT_SERVING, codes.OK},
		{"service draining", false, accountv1connect.AccountServiceName, healthpb.HealthCheckResponse_NOT_SERVING, codes.OK},
		{"server back", true, "", healthpb.HealthCheckResponse_SERVING, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts.SetServing(tt.serving)
			got, code := check(tt.service)
			if code != tt.wantCode || (code == codes.OK && got != tt.want) {
				t.Errorf("Check(%q) = %v, %v; want %v, %v", tt.service, got, code, tt.want, tt.wantCode)
			}
		})
	}
}

func TestHandlerOptions(t *testing.T) {
	requireKey := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if req.Header().Get("X-Key") != "ok" {
				return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no key"))
			}
			return next(ctx, req)
		}
	})
	ts := start(t, rpcserver.Config{ReadMaxBytes: 1024, Interceptors: []connect.Interceptor{requireKey}}, newAccounts())
	withKey := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("X-Key", "ok")
			return next(ctx, req)
		}
	}))
	anonymous := accountv1connect.NewAccountServiceClient(h2cClient(t), ts.url())
	keyed := accountv1connect.NewAccountServiceClient(h2cClient(t), ts.url(), withKey)

	tests := []struct {
		name   string
		client accountv1connect.AccountServiceClient
		userID string
		want   connect.Code
	}{
		{"interceptor rejects", anonymous, "u", connect.CodeUnauthenticated},
		{"interceptor admits", keyed, "u", 0},
		{"message over limit", keyed, strings.Repeat("u", 2048), connect.CodeResourceExhausted},
		{"panic becomes internal", keyed, "panic", connect.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.GetUser(context.Background(), &accountv1.GetUserRequest{UserId: tt.userID})
			if got := connect.CodeOf(err); err != nil && got != tt.want || err == nil && tt.want != 0 {
				t.Errorf("GetUser error = %v, want code %v", err, tt.want)
			}
		})
	}

	t.Run("health needs no credentials", func(t *testing.T) {
		_, err := healthpb.NewHealthClient(grpcConn(t, ts.addr)).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// Small messages go out uncompressed even when the client accepts gzip.
func TestCompressMinBytes(t *testing.T) {
	ts := start(t, rpcserver.Config{}, newAccounts())
	client := h2cClient(t)
	tests := []struct {
		userID   string
		wantGzip bool
	}{
		{"small", false},
		{"big", true},
	}
	for _, tt := range tests {
		t.Run(tt.userID, func(t *testing.T) {
			body := strings.NewReader(`{"userId":"` + tt.userID + `"}`)
			req, err := http.NewRequest(http.MethodPost, ts.url()+accountv1connect.AccountServiceGetUserProcedure, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept-Encoding", "gzip")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if res.ProtoMajor != 2 {
				t.Errorf("protocol %s, want HTTP/2", res.Proto)
			}
			if gz := res.Header.Get("Content-Encoding") == "gzip"; gz != tt.wantGzip {
				t.Errorf("gzip = %v, want %v", gz, tt.wantGzip)
			}
		})
	}
}

func TestGracefulShutdown(t *testing.T) {
	svc := newAccounts()
	ts := start(t, rpcserver.Config{DrainDelay: 300 * time.Millisecond}, svc)
	conn := grpcConn(t, ts.addr)
	client := accountv1.NewAccountServiceClient(conn)
	health := healthpb.NewHealthClient(conn)

	callErr := make(chan error, 1)
	go func() {
		_, err := client.GetUser(context.Background(), &accountv1.GetUserRequest{UserId: "slow"})
		callErr <- err
	}()
	<-svc.started
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()

	// During the drain delay the server still answers, but as NOT_SERVING.
	deadline := time.Now().Add(250 * time.Millisecond)
	for {
		res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never turned NOT_SERVING: %v %v", res, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	close(svc.release)
	if err := <-callErr; err != nil {
		t.Errorf("in-flight call failed: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve() = %v", err)
	}
	if c, err := net.Dial("tcp", ts.addr); err == nil {
		c.Close()
		t.Error("listener still accepts after shutdown")
	}
}

func TestShutdownEndsLongCalls(t *testing.T) {
	tests := []struct {
		name       string
		onShutdown bool // release the call from OnShutdown rather than waiting out the timeout
		wantOK     bool
	}{
		{"OnShutdown hook ends the call", true, true},
		{"timeout cuts the call", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newAccounts()
			ts := start(t, rpcserver.Config{ShutdownTimeout: 200 * time.Millisecond}, svc)
			if tt.onShutdown {
				ts.OnShutdown(func() { close(svc.release) })
			}
			client := accountv1connect.NewAccountServiceClient(h2cClient(t), ts.url())
			callErr := make(chan error, 1)
			go func() {
				_, err := client.GetUser(context.Background(), &accountv1.GetUserRequest{UserId: "slow"})
				callErr <- err
			}()
			<-svc.started
			if err := ts.stop(); err != nil {
				t.Errorf("Serve() = %v", err)
			}
			if err := <-callErr; (err == nil) != tt.wantOK {
				t.Errorf("call error = %v, want success %v", err, tt.wantOK)
			}
		})
	}
}

func TestListenErrors(t *testing.T) {
	ts := start(t, rpcserver.Config{}, newAccounts())
	srv, err := rpcserver.New(rpcserver.Config{Addr: ts.addr}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Serve() on a taken port = %v", err)
	}
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	ts := start(t, rpcserver.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, newAccounts())
	tlsConfig := &tls.Config{RootCAs: pool}
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}}
	t.Cleanup(httpClient.CloseIdleConnections)
	url := "https://" + ts.addr

	t.Run("connect over HTTP/2", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, url+"/grpc.health.v1.Health/Check", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 {
			t.Fatalf("got %s %d %s, want HTTP/2 200", res.Proto, res.StatusCode, body)
		}
		client := accountv1connect.NewAccountServiceClient(httpClient, url)
		if _, err := client.GetUser(context.Background(), &accountv1.GetUserRequest{UserId: "u"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("grpc-go", func(t *testing.T) {
		conn := grpcConn(t, ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
		res, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("status %v", res.GetStatus())
		}
	})

	t.Run("cleartext refused", func(t *testing.T) {
		client := accountv1connect.NewAccountServiceClient(h2cClient(t), "http://"+ts.addr)
		if _, err := client.GetUser(context.Background(), &accountv1.GetUserRequest{UserId: "u"}); err == nil {
			t.Fatal("cleartext call to a TLS server succeeded")
		}
	})
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "waggle test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestCORS(t *testing.T) {
	ts := start(t, rpcserver.Config{CORSOrigins: []string{"https://app.example"}}, &accounts{})
	preflight := func(origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, ts.url()+accountv1connect.AccountServiceGetUserProcedure, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type") // sorted, as browsers send it
		res, err := http1Client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	tests := []struct {
		origin string
		allow  string
	}{
		{"https://app.example", "https://app.example"},
		{"https://evil.example", ""},
	}
	for _, tt := range tests {
		res := preflight(tt.origin)
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != tt.allow {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin %q, want %q", tt.origin, got, tt.allow)
		}
		if tt.allow != "" && !strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "authorization") {
			t.Errorf("preflight allows headers %q, want authorization among them", res.Header.Get("Access-Control-Allow-Headers"))
		}
	}
}
