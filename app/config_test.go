package app

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestRolesString(t *testing.T) {
	tests := []struct {
		roles Roles
		want  string
	}{
		{RoleServe, "serve"},
		{RoleEdge, "edge"},
		{RoleChat, "chat"},
		{RolePresence, "presence"},
		{RoleEdge | RolePresence, "edge+presence"},
		{0, "Roles(0)"},
	}
	for _, tt := range tests {
		if got := tt.roles.String(); got != tt.want {
			t.Errorf("Roles(%d).String() = %q, want %q", uint8(tt.roles), got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	secret := strings.Repeat("s", 16)
	split := func(roles Roles) Config {
		return Config{Roles: roles, PostgresURL: "postgres://db/w", RedisURL: "redis://r/0", TokenKey: key, InternalSecret: secret, ChatURL: "http://chat:8080", PresenceURL: "http://presence:8080"}
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" means success
		check   func(t *testing.T, cfg Config, s secrets)
	}{
		{name: "zero value means serve embedded with defaults", cfg: Config{}, check: func(t *testing.T, cfg Config, s secrets) {
			if cfg.Roles != RoleServe || cfg.stack != StackEmbedded || cfg.DataDir != "./waggle-data" || cfg.Addr != ":8080" ||
				cfg.PostgresURL != "" || cfg.RedisURL != "" || cfg.RedisPrefix != "waggle:" ||
				cfg.MaxMessageBytes != 1<<20 || cfg.ShutdownTimeout != 15*time.Second || cfg.EdgeID == "" {
				t.Errorf("defaults not applied: %+v", cfg)
			}
			// The data directory supplies them.
			if s.tokenSeed != nil || s.internalSecret != "" || len(s.warnings) != 0 {
				t.Errorf("embedded serve got keys or warnings before opening its data directory: %+v", s)
			}
		}},
		{name: "embedded keeps configured keys", cfg: Config{TokenKey: key, InternalSecret: secret}, check: func(t *testing.T, cfg Config, s secrets) {
			if cfg.stack != StackEmbedded || len(s.tokenSeed) != 32 || s.internalSecret != secret {
				t.Errorf("got %+v %+v", cfg, s)
			}
		}},
		{name: "serve on postgres and redis", cfg: Config{PostgresURL: "postgres://db/w", RedisURL: "redis://r/0", DataDir: "unused"}, check: func(t *testing.T, cfg Config, s secrets) {
			if cfg.stack != StackProduction {
				t.Errorf("stack = %v", cfg.stack)
			}
			if len(s.tokenSeed) != 32 || len(s.internalSecret) < 16 {
				t.Errorf("serve did not get generated keys: %+v", s)
			}
			if len(s.warnings) != 1 || !strings.Contains(s.warnings[0], "ephemeral") {
				t.Errorf("warnings = %q, want one about the ephemeral token key", s.warnings)
			}
		}},
		{name: "serve with postgres only", cfg: Config{PostgresURL: "postgres://db/w"}, wantErr: "Redis is not"},
		{name: "serve with redis only", cfg: Config{RedisURL: "redis://r/0"}, wantErr: "Postgres is not"},
		{name: "chat without postgres", cfg: Config{Roles: RoleChat, RedisURL: "redis://r/0", TokenKey: key, InternalSecret: secret, PresenceURL: "http://p:1"}, wantErr: "need Postgres (set --postgres"},
		{name: "edge without redis", cfg: Config{Roles: RoleEdge, TokenKey: key, InternalSecret: secret, ChatURL: "http://c:1", PresenceURL: "http://p:1"}, wantErr: "need Redis (set --redis"},
		{name: "explicit values kept", cfg: Config{Addr: ":9", RedisPrefix: "x:", EdgeID: "e1", TokenKey: key, InternalSecret: secret}, check: func(t *testing.T, cfg Config, s secrets) {
			if cfg.Addr != ":9" || cfg.RedisPrefix != "x:" || cfg.EdgeID != "e1" || s.internalSecret != secret || len(s.warnings) != 0 {
				t.Errorf("got %+v %+v", cfg, s)
			}
		}},
		{name: "edge ids differ", cfg: Config{}, check: func(t *testing.T, cfg Config, _ secrets) {
			other, _, _ := Config{}.resolve()
			if cfg.EdgeID == other.EdgeID {
				t.Errorf("two default edge ids are both %q", cfg.EdgeID)
			}
		}},
		{name: "token key not base64", cfg: Config{TokenKey: "!!"}, wantErr: "token key is not base64"},
		{name: "token key too short", cfg: Config{TokenKey: base64.StdEncoding.EncodeToString(make([]byte, 31))}, wantErr: "token key is 31 bytes, want 32"},
		{name: "split roles need a token key", cfg: Config{Roles: RolePresence, InternalSecret: secret, RedisURL: "redis://r/0"}, wantErr: "need a token key"},
		{name: "split roles need an internal secret", cfg: Config{Roles: RolePresence, TokenKey: key, RedisURL: "redis://r/0"}, wantErr: "need an internal secret"},
		{name: "short internal secret", cfg: Config{InternalSecret: "short"}, wantErr: "at least 16"},
		{name: "edge needs chat", cfg: Config{Roles: RoleEdge, TokenKey: key, InternalSecret: secret, PresenceURL: "http://p:1", RedisURL: "redis://r/0"}, wantErr: "need the chat service's URL"},
		{name: "edge needs presence", cfg: Config{Roles: RoleEdge, TokenKey: key, InternalSecret: secret, ChatURL: "http://c:1", RedisURL: "redis://r/0"}, wantErr: "need the presence service's URL"},
		{name: "chat needs presence", cfg: Config{Roles: RoleChat, TokenKey: key, InternalSecret: secret, PostgresURL: "postgres://db/w", RedisURL: "redis://r/0"}, wantErr: "need the presence service's URL"},
		{name: "bad peer url", cfg: Config{Roles: RoleChat, TokenKey: key, InternalSecret: secret, PresenceURL: "presence:8080", PostgresURL: "postgres://db/w", RedisURL: "redis://r/0"}, wantErr: "must look like http://host:port"},
		{name: "presence needs chat", cfg: Config{Roles: RolePresence, TokenKey: key, InternalSecret: secret, RedisURL: "redis://r/0"}, wantErr: "chat service's URL"},
		{name: "presence with chat", cfg: Config{Roles: RolePresence, TokenKey: key, InternalSecret: secret, ChatURL: "http://chat:8080", RedisURL: "redis://r/0"}},
		{name: "edge with peers", cfg: split(RoleEdge)},
		{name: "chat with presence", cfg: split(RoleChat)},
		{name: "unknown role bits", cfg: Config{Roles: 1 << 5}, wantErr: "unknown roles"},
		{name: "negative limit", cfg: Config{MaxMessageBytes: -1}, wantErr: "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, s, err := tt.cfg.resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve() error = %v", err)
			}
			if tt.check != nil {
				tt.check(t, cfg, s)
			}
		})
	}
}
