package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wagglechat/waggle/app"
	"github.com/wagglechat/waggle/datadir"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/internal/reflecttest"
)

const (
	unreachablePostgres = "postgres://postgres@127.0.0.1:1/x?sslmode=disable"
	testTokenKey        = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	testSecret          = "internal-secret-for-tests"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs the app until the test ends and returns its address.
func start(t *testing.T, cfg app.Config) string {
	t.Helper()
	ready := make(chan net.Addr, 1)
	cfg.Ready = func(a net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, discard()) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run() = %v before ready", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("app not ready after 30s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v after stop", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run() did not return after stop")
		}
	})
	return addr.String()
}

func TestRunRoles(t *testing.T) {
	pgURL := pgtest.NewURL(t)
	_, prefix := redistest.New(t)
	redisURL := redistest.URL()
	chatServices := []string{
		"waggle.account.v1.AccountService",
		"waggle.chat.v1.ConversationService",
		"waggle.chat.v1.MessageService",
		"waggle.contact.v1.ContactService",
	}
	chatInternal := []string{"waggle.chat.v1.DeliveryService", "waggle.chat.v1.RelationService"}
	presenceServices := []string{"waggle.presence.v1.PresenceService"}
	presenceInternal := []string{"waggle.presence.v1.SessionRegistryService"}
	edgeServices := []string{"waggle.edge.v1.EdgeService"}

	// Reflection lists the public services; the internal ones are mounted
	// (healthy) but not listed.
	tests := []struct {
		name     string
		cfg      app.Config
		services []string
		internal []string
	}{
		{"serve", app.Config{PostgresURL: pgURL, RedisURL: redisURL}, slices.Concat(chatServices, presenceServices, edgeServices), slices.Concat(chatInternal, presenceInternal)},
		{"serve embedded", app.Config{DataDir: t.TempDir()}, slices.Concat(chatServices, presenceServices, edgeServices), slices.Concat(chatInternal, presenceInternal)},
		{"chat", app.Config{Roles: app.RoleChat, PostgresURL: pgURL, RedisURL: redisURL, PresenceURL: "http://127.0.0.1:1"}, chatServices, chatInternal},
		// Only chat uses Postgres: the other roles start with it unreachable.
		{"presence", app.Config{Roles: app.RolePresence, PostgresURL: unreachablePostgres, RedisURL: redisURL, ChatURL: "http://127.0.0.1:1"}, presenceServices, presenceInternal},
		{"edge", app.Config{Roles: app.RoleEdge, PostgresURL: unreachablePostgres, RedisURL: redisURL, ChatURL: "http://127.0.0.1:1", PresenceURL: "http://127.0.0.1:1"}, edgeServices, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Addr = "127.0.0.1:0"
			cfg.RedisPrefix = prefix
			cfg.TokenKey = testTokenKey
			cfg.InternalSecret = testSecret
			addr := start(t, cfg)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			want := slices.Concat(tt.services, []string{
				"grpc.health.v1.Health",
				"grpc.reflection.v1.ServerReflection",
				"grpc.reflection.v1alpha.ServerReflection",
			})
			slices.Sort(want)
			if got := reflecttest.Services(t, conn); !slices.Equal(got, want) {
				t.Errorf("reflection lists %v, want %v", got, want)
			}
			health := healthpb.NewHealthClient(conn)
			for _, service := range slices.Concat([]string{""}, tt.services, tt.internal) {
				res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
				if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Errorf("health of %q = %v, %v; want SERVING", service, res.GetStatus(), err)
				}
			}
		})
	}
}

// The auth interceptor guards every mounted service.
func TestRunAuthenticates(t *testing.T) {
	_, prefix := redistest.New(t)
	addr := start(t, app.Config{Addr: "127.0.0.1:0", PostgresURL: pgtest.NewURL(t), RedisURL: redistest.URL(), RedisPrefix: prefix})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	client := accountv1connect.NewAccountServiceClient(&http.Client{Transport: &http.Transport{Protocols: &p}}, "http://"+addr)

	tests := []struct {
		name string
		call func() error
		want connect.Code
	}{
		{"public call reaches the handler", func() error {
			_, err := client.Register(context.Background(), &accountv1.RegisterRequest{})
			return err
		}, connect.CodeInvalidArgument},
		{"call without a token is refused", func() error {
			_, err := client.GetUser(context.Background(), &accountv1.GetUserRequest{})
			return err
		}, connect.CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); connect.CodeOf(err) != tt.want {
				t.Errorf("error = %v, want code %v", err, tt.want)
			}
		})
	}
}

func TestRunFailsFast(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	pgURL := pgtest.NewURL(t)
	missingDB := strings.Replace(pgURL, "/waggle_test_", "/waggle_missing_", 1)
	redisURL := redistest.URL()
	locked := t.TempDir()
	holder, err := datadir.Open(locked)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close() }) // and kept from the finalizer until then
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cfg     app.Config
		wantErr []string
	}{
		{"postgres unreachable", app.Config{PostgresURL: unreachablePostgres, RedisURL: redisURL}, []string{"postgres: cannot reach 127.0.0.1:1"}},
		{"database missing", app.Config{PostgresURL: missingDB, RedisURL: redisURL}, []string{"does not exist", "createdb"}},
		{"redis unreachable", app.Config{PostgresURL: pgURL, RedisURL: "redis://127.0.0.1:1/0"}, []string{"redis: cannot reach 127.0.0.1:1"}},
		{"redis url invalid", app.Config{PostgresURL: pgURL, RedisURL: "http://nope"}, []string{"redis: parse url"}},
		{"redis missing", app.Config{PostgresURL: pgURL}, []string{"Redis is not", "--redis or WAGGLE_REDIS_URL"}},
		{"address taken", app.Config{PostgresURL: pgURL, RedisURL: redisURL, Addr: taken.Addr().String()}, []string{"address already in use"}},
		{"address taken, embedded", app.Config{DataDir: t.TempDir(), Addr: taken.Addr().String()}, []string{"address already in use"}},
		{"tls files missing", app.Config{DataDir: t.TempDir(), TLSCertFile: "/nonexistent.crt", TLSKeyFile: "/nonexistent.key"}, []string{"load TLS key pair"}},
		{"data dir locked", app.Config{DataDir: locked}, []string{"data directory " + locked + " is in use by", "pid"}},
		{"data dir not creatable", app.Config{DataDir: filepath.Join(notADir, "data")}, []string{"data directory", "cannot be created"}},
		{"config invalid", app.Config{Roles: app.RoleEdge}, []string{"config: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := app.Run(ctx, tt.cfg, discard())
			if err == nil {
				t.Fatal("Run() succeeded")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run() = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	if err := app.Migrate(context.Background(), app.Config{PostgresURL: pgtest.NewURL(t)}, discard()); err != nil {
		t.Errorf("Migrate() on a migrated database = %v", err)
	}
	err := app.Migrate(context.Background(), app.Config{PostgresURL: unreachablePostgres}, discard())
	if err == nil || !strings.Contains(err.Error(), "postgres: cannot reach") {
		t.Errorf("Migrate() on an unreachable database = %v", err)
	}
}
