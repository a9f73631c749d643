package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wagglechat/waggle/app"
	"github.com/wagglechat/waggle/services/account"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" means success
		check   func(t *testing.T, inv invocation)
	}{
		{name: "serve defaults", args: []string{"serve"}, check: func(t *testing.T, inv invocation) {
			c := inv.app
			if inv.cmd.name != "serve" || c.Roles != app.RoleServe || c.Addr != ":8080" ||
				c.PostgresURL != "" || c.RedisURL != "" || c.DataDir != "./waggle-data" ||
				c.RedisPrefix != "waggle:" || c.SkipMigrate || c.MaxMessageBytes != 1<<20 ||
				c.ShutdownTimeout != 15*time.Second || inv.logLevel != slog.LevelInfo || inv.logFormat != "text" {
				t.Errorf("got %+v", inv)
			}
		}},
		{name: "account limits", args: []string{"chat", "--login-limit", "5", "--register-limit", "-1", "--password-hashes", "2"},
			env: map[string]string{"WAGGLE_LOGIN_ADDRESS_LIMIT": "7"}, check: func(t *testing.T, inv invocation) {
				want := account.Limits{Login: 5, LoginAddress: 7, Register: -1, Refresh: account.DefaultLimits.Refresh}
				if inv.app.AccountLimits != want || inv.app.PasswordHashes != 2 {
					t.Errorf("limits %+v, %d hashes; want %+v, 2", inv.app.AccountLimits, inv.app.PasswordHashes, want)
				}
			}},
		{name: "env over default", args: []string{"serve"}, env: map[string]string{"WAGGLE_ADDR": ":9000"}, check: func(t *testing.T, inv invocation) {
			if inv.app.Addr != ":9000" {
				t.Errorf("addr = %q", inv.app.Addr)
			}
		}},
		{name: "flag over env", args: []string{"serve", "--addr", ":9001"}, env: map[string]string{"WAGGLE_ADDR": ":9000"}, check: func(t *testing.T, inv invocation) {
			if inv.app.Addr != ":9001" {
				t.Errorf("addr = %q", inv.app.Addr)
			}
		}},
		{name: "flag equal to default still wins", args: []string{"serve", "-addr=:8080"}, env: map[string]string{"WAGGLE_ADDR": ":9000"}, check: func(t *testing.T, inv invocation) {
			if inv.app.Addr != ":8080" {
				t.Errorf("addr = %q", inv.app.Addr)
			}
		}},
		{name: "every serve setting from env", args: []string{"serve"}, env: map[string]string{
			"WAGGLE_POSTGRES_URL":      "postgres://db/w",
			"WAGGLE_REDIS_URL":         "redis://r:1/2",
			"WAGGLE_REDIS_PREFIX":      "p:",
			"WAGGLE_TLS_CERT":          "c.pem",
			"WAGGLE_TLS_KEY":           "k.pem",
			"WAGGLE_TOKEN_KEY":         "tk",
			"WAGGLE_INTERNAL_SECRET":   "is",
			"WAGGLE_EDGE_ID":           "e7",
			"WAGGLE_NO_MIGRATE":        "true",
			"WAGGLE_MAX_MESSAGE_BYTES": "2048",
			"WAGGLE_DRAIN_DELAY":       "2s",
			"WAGGLE_SHUTDOWN_TIMEOUT":  "3s",
			"WAGGLE_LOG_LEVEL":         "warn",
			"WAGGLE_LOG_FORMAT":        "json",
		}, check: func(t *testing.T, inv invocation) {
			c := inv.app
			if c.PostgresURL != "postgres://db/w" || c.RedisURL != "redis://r:1/2" || c.RedisPrefix != "p:" ||
				c.TLSCertFile != "c.pem" || c.TLSKeyFile != "k.pem" || c.TokenKey != "tk" || c.InternalSecret != "is" ||
				c.EdgeID != "e7" || !c.SkipMigrate || c.MaxMessageBytes != 2048 || c.DrainDelay != 2*time.Second ||
				c.ShutdownTimeout != 3*time.Second || inv.logLevel != slog.LevelWarn || inv.logFormat != "json" {
				t.Errorf("got %+v", inv)
			}
		}},
		{name: "every serve setting from flags", args: []string{"serve",
			"--postgres", "postgres://db/w", "--redis", "redis://r:1/2", "--redis-prefix", "p:",
			"--tls-cert", "c.pem", "--tls-key", "k.pem", "--token-key", "tk", "--internal-secret", "is",
			"--edge-id", "e7", "--no-migrate", "--max-message-bytes", "2048", "--drain-delay", "2s",
			"--shutdown-timeout", "3s", "--log-level", "debug", "--log-format", "json",
		}, check: func(t *testing.T, inv invocation) {
			c := inv.app
			if c.PostgresURL != "postgres://db/w" || c.RedisURL != "redis://r:1/2" || c.RedisPrefix != "p:" ||
				c.TLSCertFile != "c.pem" || c.TLSKeyFile != "k.pem" || c.TokenKey != "tk" || c.InternalSecret != "is" ||
				c.EdgeID != "e7" || !c.SkipMigrate || c.MaxMessageBytes != 2048 || c.DrainDelay != 2*time.Second ||
				c.ShutdownTimeout != 3*time.Second || inv.logLevel != slog.LevelDebug || inv.logFormat != "json" {
				t.Errorf("got %+v", inv)
			}
		}},
		{name: "edge reads its peers and ignores postgres", args: []string{"edge", "--chat-url", "http://c:1"},
			env: map[string]string{"WAGGLE_PRESENCE_URL": "http://p:1", "WAGGLE_POSTGRES_URL": "postgres://db/w"},
			check: func(t *testing.T, inv invocation) {
				c := inv.app
				if c.Roles != app.RoleEdge || c.ChatURL != "http://c:1" || c.PresenceURL != "http://p:1" || c.PostgresURL != "" {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "chat has presence url", args: []string{"chat", "--presence-url", "http://p:1"}, check: func(t *testing.T, inv invocation) {
			if inv.app.Roles != app.RoleChat || inv.app.PresenceURL != "http://p:1" {
				t.Errorf("got %+v", inv.app)
			}
		}},
		{name: "presence", args: []string{"presence"}, check: func(t *testing.T, inv invocation) {
			if inv.app.Roles != app.RolePresence {
				t.Errorf("roles = %v", inv.app.Roles)
			}
		}},
		{name: "migrate defaults to the local postgres", args: []string{"migrate"}, check: func(t *testing.T, inv invocation) {
			if inv.app.PostgresURL != app.DefaultPostgresURL {
				t.Errorf("postgres = %q", inv.app.PostgresURL)
			}
		}},
		{name: "resync-blockers defaults to the local servers", args: []string{"resync-blockers"}, check: func(t *testing.T, inv invocation) {
			if inv.app.PostgresURL != app.DefaultPostgresURL || inv.app.RedisURL != app.DefaultRedisURL {
				t.Errorf("postgres = %q, redis = %q", inv.app.PostgresURL, inv.app.RedisURL)
			}
		}},
		{name: "migrate", args: []string{"migrate", "--postgres", "postgres://db/w"}, check: func(t *testing.T, inv invocation) {
			if inv.cmd.name != "migrate" || inv.app.PostgresURL != "postgres://db/w" {
				t.Errorf("got %+v", inv)
			}
		}},
		{name: "version", args: []string{"version"}, check: func(t *testing.T, inv invocation) {
			if inv.cmd.name != "version" || inv.help {
				t.Errorf("got %+v", inv)
			}
		}},
		{name: "--help", args: []string{"--help"}, check: wantHelp("")},
		{name: "help", args: []string{"help"}, check: wantHelp("")},
		{name: "help serve", args: []string{"help", "serve"}, check: wantHelp("serve")},
		{name: "serve --help", args: []string{"serve", "--help"}, check: wantHelp("serve")},
		{name: "edge -h", args: []string{"edge", "-h"}, check: wantHelp("edge")},

		{name: "no command", args: nil, wantErr: "no command given"},
		{name: "unknown command", args: []string{"serv"}, wantErr: `unknown command "serv"`},
		{name: "help for unknown command", args: []string{"help", "serv"}, wantErr: `unknown command "serv"`},
		{name: "unknown flag", args: []string{"serve", "--nope"}, wantErr: "flag provided but not defined: -nope"},
		{name: "edge has no postgres", args: []string{"edge", "--postgres", "x"}, wantErr: "not defined: -postgres"},
		{name: "only serve has a data dir", args: []string{"chat", "--data-dir", "x"}, wantErr: "not defined: -data-dir"},
		{name: "serve has no chat url", args: []string{"serve", "--chat-url", "x"}, wantErr: "not defined: -chat-url"},
		{name: "presence has no peers", args: []string{"presence", "--presence-url", "x"}, wantErr: "not defined: -presence-url"},
		{name: "migrate has no addr", args: []string{"migrate", "--addr", "x"}, wantErr: "not defined: -addr"},
		{name: "positional argument", args: []string{"serve", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "bad flag value", args: []string{"serve", "--drain-delay", "soon"}, wantErr: "drain-delay"},
		{name: "bad env value", args: []string{"serve"}, env: map[string]string{"WAGGLE_NO_MIGRATE": "maybe"}, wantErr: `WAGGLE_NO_MIGRATE: invalid value "maybe"`},
		{name: "bad log level", args: []string{"serve", "--log-level", "loud"}, wantErr: "log-level"},
		{name: "bad log format", args: []string{"serve"}, env: map[string]string{"WAGGLE_LOG_FORMAT": "xml"}, wantErr: `log format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := parse(tt.args, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse() error = %v", err)
			}
			tt.check(t, inv)
		})
	}
}

// TestStack checks which stack a command line selects, and the one-line
// error when it selects none.
func TestStack(t *testing.T) {
	const pg, rds = "postgres://db/w", "redis://r:1/0"
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    app.Stack
		dataDir string // want, for the embedded stack
		wantErr []string
	}{
		{name: "serve with nothing configured", args: []string{"serve"}, want: app.StackEmbedded, dataDir: "./waggle-data"},
		{name: "serve with a data dir flag", args: []string{"serve", "--data-dir", "/srv/w"}, want: app.StackEmbedded, dataDir: "/srv/w"},
		{name: "serve with a data dir from env", args: []string{"serve"}, env: map[string]string{"WAGGLE_DATA_DIR": "/srv/e"}, want: app.StackEmbedded, dataDir: "/srv/e"},
		{name: "serve with a redis prefix only", args: []string{"serve", "--redis-prefix", "p:"}, want: app.StackEmbedded, dataDir: "./waggle-data"},
		{name: "serve with both flags", args: []string{"serve", "--postgres", pg, "--redis", rds}, want: app.StackProduction},
		{name: "serve with both from env", args: []string{"serve"}, env: map[string]string{"WAGGLE_POSTGRES_URL": pg, "WAGGLE_REDIS_URL": rds}, want: app.StackProduction},
		{name: "serve with one flag and one env", args: []string{"serve", "--postgres", pg}, env: map[string]string{"WAGGLE_REDIS_URL": rds}, want: app.StackProduction},
		{name: "serve with postgres only", args: []string{"serve", "--postgres", pg},
			wantErr: []string{"Postgres is configured but Redis is not", "set --redis or WAGGLE_REDIS_URL", "unset --postgres or WAGGLE_POSTGRES_URL"}},
		{name: "serve with redis only", args: []string{"serve"}, env: map[string]string{"WAGGLE_REDIS_URL": rds},
			wantErr: []string{"Redis is configured but Postgres is not", "set --postgres or WAGGLE_POSTGRES_URL"}},
		{name: "chat with nothing", args: []string{"chat"}, wantErr: []string{"roles chat need Postgres and Redis", "--postgres or WAGGLE_POSTGRES_URL", "--redis or WAGGLE_REDIS_URL"}},
		{name: "chat without postgres", args: []string{"chat", "--redis", rds}, wantErr: []string{"roles chat need Postgres (set --postgres or WAGGLE_POSTGRES_URL)"}},
		{name: "chat without redis", args: []string{"chat", "--postgres", pg}, wantErr: []string{"roles chat need Redis (set --redis or WAGGLE_REDIS_URL)"}},
		{name: "chat with both", args: []string{"chat", "--postgres", pg, "--redis", rds}, want: app.StackProduction},
		{name: "edge without redis", args: []string{"edge"}, wantErr: []string{"roles edge need Redis (set --redis or WAGGLE_REDIS_URL)"}},
		{name: "edge with redis", args: []string{"edge"}, env: map[string]string{"WAGGLE_REDIS_URL": rds}, want: app.StackProduction},
		{name: "presence without redis", args: []string{"presence"}, wantErr: []string{"roles presence need Redis"}},
		{name: "presence with redis", args: []string{"presence", "--redis", rds}, want: app.StackProduction},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := parse(tt.args, func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatalf("parse() error = %v", err)
			}
			got, err := inv.app.Stack()
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Stack() = %v, want an error", got)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Stack() error = %q, want it to contain %q", err, want)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Stack() = %v, %v; want %v", got, err, tt.want)
			}
			if tt.want == app.StackEmbedded && inv.app.DataDir != tt.dataDir {
				t.Errorf("data dir = %q, want %q", inv.app.DataDir, tt.dataDir)
			}
		})
	}
}

func wantHelp(cmd string) func(*testing.T, invocation) {
	return func(t *testing.T, inv invocation) {
		if !inv.help || inv.cmd.name != cmd {
			t.Errorf("got help=%v cmd=%q, want help for %q", inv.help, inv.cmd.name, cmd)
		}
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		cmd  string
		want []string
	}{
		{"", []string{"Usage: waggle <command>", "serve", "edge", "chat", "presence", "migrate", "version"}},
		{"serve", []string{
			"--addr ADDR", `env WAGGLE_ADDR, default ":8080"`,
			"env WAGGLE_POSTGRES_URL", "env WAGGLE_REDIS_URL", "env WAGGLE_REDIS_PREFIX",
			"env WAGGLE_TLS_CERT", "env WAGGLE_TLS_KEY", "env WAGGLE_TOKEN_KEY", "env WAGGLE_INTERNAL_SECRET",
			"env WAGGLE_EDGE_ID", "--no-migrate\n", "env WAGGLE_NO_MIGRATE, default false",
			"env WAGGLE_POSTGRES_URL, default none", "without both, embedded in --data-dir", `env WAGGLE_DATA_DIR, default "./waggle-data"`,
			"env WAGGLE_LOG_LEVEL", "env WAGGLE_LOG_FORMAT", "--shutdown-timeout DURATION",
		}},
		{"edge", []string{"env WAGGLE_CHAT_URL", "env WAGGLE_PRESENCE_URL"}},
		{"migrate", []string{`env WAGGLE_POSTGRES_URL, default "postgres://postgres@127.0.0.1:5432/waggle?sslmode=disable"`}},
		{"chat", []string{"Postgres URL (required)", "env WAGGLE_REDIS_URL, default none"}},
		{"version", []string{"print the version"}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			cmd, _ := findCommand(tt.cmd)
			var b bytes.Buffer
			usage(&b, cmd)
			for _, want := range tt.want {
				if !strings.Contains(b.String(), want) {
					t.Errorf("usage lacks %q:\n%s", want, b.String())
				}
			}
		})
	}
}
