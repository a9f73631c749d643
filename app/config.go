package app

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/wagglechat/waggle/notify"
	"github.com/wagglechat/waggle/services/account"
)

// Defaults for the zero values of Config. cmd/waggle shows them in --help.
const (
	DefaultAddr    = ":8080"
	DefaultDataDir = "./waggle-data"
	// DefaultPostgresURL and DefaultRedisURL are the defaults of the
	// commands that only work on Postgres and Redis (Migrate,
	// ResyncBlockers). A server never assumes them: without URLs, serve
	// runs embedded and the split roles refuse to start.
	DefaultPostgresURL     = "postgres://postgres@127.0.0.1:5432/waggle?sslmode=disable"
	DefaultRedisURL        = "redis://127.0.0.1:6379/0"
	DefaultRedisPrefix     = "waggle:"
	DefaultMaxMessageBytes = 1 << 20
	DefaultShutdownTimeout = 15 * time.Second
)

// Roles is the set of parts one process runs.
type Roles uint8

// The roles. Chat also serves accounts and contacts: they share its
// Postgres database.
const (
	RoleEdge Roles = 1 << iota
	RoleChat
	RolePresence

	// RoleServe runs everything in one process.
	RoleServe = RoleEdge | RoleChat | RolePresence
)

// Has reports whether r includes every role in role.
func (r Roles) Has(role Roles) bool { return r&role == role }

func (r Roles) String() string {
	if r == RoleServe {
		return "serve"
	}
	var names []string
	for _, n := range []struct {
		role Roles
		name string
	}{{RoleEdge, "edge"}, {RoleChat, "chat"}, {RolePresence, "presence"}} {
		if r.Has(n.role) {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("Roles(%d)", uint8(r))
	}
	return strings.Join(names, "+")
}

// needsPostgres reports whether a role stores state in Postgres: only chat
// (with accounts and contacts) does.
func (r Roles) needsPostgres() bool { return r.Has(RoleChat) }

// Stack is what a deployment stores its data in and carries its events on.
type Stack uint8

const (
	// StackEmbedded is SQLite in the data directory with the in-process bus
	// and presence registry: one `waggle serve` process, nothing to install.
	StackEmbedded Stack = iota + 1
	// StackProduction is Postgres and Redis, shared by any number of
	// processes of any roles.
	StackProduction
)

func (s Stack) String() string {
	switch s {
	case StackEmbedded:
		return "embedded"
	case StackProduction:
		return "postgres+redis"
	}
	return fmt.Sprintf("Stack(%d)", uint8(s))
}

const (
	postgresSetting = "--postgres or WAGGLE_POSTGRES_URL"
	redisSetting    = "--redis or WAGGLE_REDIS_URL"
)

// Stack chooses the stack cfg runs on. All roles in one process with
// neither Postgres nor Redis configured run embedded; with both, on them.
// Only one of the two is a mistake, not a mix: the embedded bus and
// presence cannot serve a second process, and a half-configured
// production deployment should not start on a local file. The split roles
// exist to share Postgres and Redis, so they need them (chat both, edge
// and presence Redis).
func (cfg Config) Stack() (Stack, error) {
	pg, rds := cfg.PostgresURL != "", cfg.RedisURL != ""
	if roles := cfg.Roles; roles != 0 && roles != RoleServe {
		switch {
		case roles.needsPostgres() && !pg && !rds:
			return 0, fmt.Errorf("config: roles %v need Postgres and Redis (set %s, and %s); only serve runs without them, embedded", roles, postgresSetting, redisSetting)
		case roles.needsPostgres() && !pg:
			return 0, fmt.Errorf("config: roles %v need Postgres (set %s); only serve runs without it, embedded", roles, postgresSetting)
		case !rds:
			return 0, fmt.Errorf("config: roles %v need Redis (set %s); only serve runs without it, embedded", roles, redisSetting)
		}
		return StackProduction, nil
	}
	switch {
	case pg && rds:
		return StackProduction, nil
	case pg:
		return 0, fmt.Errorf("config: Postgres is configured but Redis is not: the Postgres and Redis stack needs both (set %s), and the embedded one neither (unset %s)", redisSetting, postgresSetting)
	case rds:
		return 0, fmt.Errorf("config: Redis is configured but Postgres is not: the Postgres and Redis stack needs both (set %s), and the embedded one neither (unset %s)", postgresSetting, redisSetting)
	}
	return StackEmbedded, nil
}

// Config configures Run. Each field's zero value means the default given.
type Config struct {
	// Roles to run. Default RoleServe (all of them).
	Roles Roles
	// Addr is the listen address for every service of this process; ":0"
	// picks a free port. Default ":8080".
	Addr string
	// TLSCertFile and TLSKeyFile are PEM files; set both to serve TLS.
	// Default: cleartext (HTTP/1.1 and prior-knowledge HTTP/2).
	TLSCertFile string
	TLSKeyFile  string

	// PostgresURL is the database of the chat role, and RedisURL the Redis
	// holding sessions and carrying the bus. Set both to run on them (see
	// [Config.Stack]); default "": RoleServe runs embedded, in DataDir.
	PostgresURL string
	RedisURL    string
	// SkipMigrate disables applying the Postgres migrations at start.
	// Default false: migrations run at start. (The embedded store always
	// migrates: it has a single process.)
	SkipMigrate bool
	// DataDir holds the embedded stack's database and secrets (see package
	// datadir); only one process may use it at a time. Unused on Postgres
	// and Redis. Default DefaultDataDir.
	DataDir string
	// RedisPrefix starts every Redis key and channel, so several
	// deployments (or tests) share one Redis. Default "waggle:".
	RedisPrefix string

	// TokenKey is the base64 32-byte Ed25519 seed access tokens are signed
	// and verified with; every process of a deployment needs the same one.
	// Default: embedded, the one kept in DataDir (made on first start); on
	// Postgres and Redis, a random key, allowed with RoleServe only (tokens
	// then die with the process).
	TokenKey string
	// InternalSecret authenticates edges and services to each other.
	// Default: embedded, the one kept in DataDir; on Postgres and Redis,
	// random, allowed with RoleServe only, where no call leaves the process.
	InternalSecret string
	// ChatURL and PresenceURL are where a process reaches chat and presence
	// when it does not run them itself, e.g. "http://chat:8080". Default ""
	// (required when needed; ignored for roles running in this process).
	ChatURL     string
	PresenceURL string
	// EdgeGRPCAddr, if set, is a second listener carrying EdgeService on
	// grpc-go's own HTTP/2 transport (cheaper per push than net/http; for
	// native gRPC clients). Default "": only the main listener.
	EdgeGRPCAddr string
	// EdgeID names this edge node on the bus and in presence; it must be
	// unique among live edges. Default: hostname plus a random suffix.
	EdgeID string
	// EdgeWriteInterval is the least time between two writes of pushes to
	// one session while they keep coming (see edge.Config.WriteInterval).
	// Default 0: the edge's default; negative: every push at once.
	EdgeWriteInterval time.Duration
	// EdgeHelloTimeout, EdgeMaxPendingHellos and EdgeMaxPendingHellosPerConn
	// bound the streams not welcomed yet (see edge.Config.HelloTimeout,
	// MaxPendingHellos, MaxPendingHellosPerConn). Default 0: the edge's.
	EdgeHelloTimeout            time.Duration
	EdgeMaxPendingHellos        int
	EdgeMaxPendingHellosPerConn int

	// PushWebhookURL receives offline push notifications as signed JSON
	// POSTs (see package notify). Default "": no offline pushes.
	PushWebhookURL string
	// PushWebhookSecret signs the webhook's requests (HMAC-SHA256). Required
	// with PushWebhookURL.
	PushWebhookSecret string
	// SendRate and SendBurst limit each user's messages per second, per
	// chat process. Defaults 20 and 100.
	SendRate  float64
	SendBurst int
	// AccountLimits bound logins, registrations and token refreshes per
	// source address (the TCP peer: behind a proxy, every client shares
	// the proxy's address). Zero fields take account.DefaultLimits,
	// negative ones mean no limit.
	AccountLimits account.Limits
	// PasswordHashes bounds the argon2id hashes (64 MiB each) running at
	// once; further logins and registrations wait. Default
	// auth.DefaultConcurrentHashes (2).
	PasswordHashes int
	// PresenceGrace is how long a user may be gone before subscribers hear
	// they went offline. Default 5 s.
	PresenceGrace time.Duration

	// CORSOrigins are the web origins browsers may call from, or "*".
	// Default none.
	CORSOrigins []string

	// MaxMessageBytes is the largest RPC message accepted. Default 1 MiB.
	MaxMessageBytes int
	// DrainDelay is how long the process reports NOT_SERVING but still
	// serves after a stop signal, for load balancers to notice. Default 0.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the wait for in-flight calls and streams at
	// shutdown. Default 15s.
	ShutdownTimeout time.Duration

	// Ready, if set, is called with the bound address once the process
	// accepts connections. Default nil.
	Ready func(addr net.Addr)

	// stack is set by resolve.
	stack Stack
}

// secrets are the keys resolved from Config, with warnings to log once the
// process is up. On the embedded stack, a key not configured is nil here
// and comes from the data directory.
type secrets struct {
	tokenSeed      []byte
	internalSecret string
	warnings       []string
}

// resolve applies defaults and checks cfg without any I/O, so a
// misconfiguration fails before anything is contacted.
func (cfg Config) resolve() (Config, secrets, error) {
	var s secrets
	if cfg.Roles == 0 {
		cfg.Roles = RoleServe
	}
	if cfg.Roles&^RoleServe != 0 {
		return cfg, s, fmt.Errorf("config: unknown roles %v", cfg.Roles)
	}
	stack, err := cfg.Stack()
	if err != nil {
		return cfg, s, err
	}
	cfg.stack = stack
	if stack == StackEmbedded {
		cfg.DataDir = or(cfg.DataDir, DefaultDataDir)
	}
	cfg.Addr = or(cfg.Addr, DefaultAddr)
	cfg.RedisPrefix = or(cfg.RedisPrefix, DefaultRedisPrefix)
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.MaxMessageBytes < 0 || cfg.DrainDelay < 0 || cfg.ShutdownTimeout < 0 {
		return cfg, s, errors.New("config: max message bytes, drain delay and shutdown timeout must not be negative")
	}
	if cfg.EdgeID == "" {
		cfg.EdgeID = defaultEdgeID()
	}
	if cfg.PresenceGrace < 0 {
		return cfg, s, errors.New("config: presence grace must not be negative")
	}
	if cfg.PasswordHashes < 0 {
		return cfg, s, errors.New("config: password hashes must not be negative")
	}
	if cfg.SendRate < 0 || cfg.SendBurst < 0 {
		return cfg, s, errors.New("config: send rate and burst must not be negative")
	}
	if cfg.PushWebhookURL != "" && cfg.Roles.Has(RoleChat) {
		if err := (notify.WebhookConfig{URL: cfg.PushWebhookURL, Secret: cfg.PushWebhookSecret}).Validate(); err != nil {
			return cfg, s, fmt.Errorf("config: push webhook: %w", err)
		}
	}

	// Split roles must agree on keys; one process may invent its own, and
	// an embedded one keeps its own in the data directory.
	embedded := stack == StackEmbedded
	alone := cfg.Roles == RoleServe
	switch {
	case cfg.TokenKey != "":
		seed, err := base64.StdEncoding.DecodeString(cfg.TokenKey)
		if err != nil {
			return cfg, s, fmt.Errorf("config: token key is not base64: %w", err)
		}
		if len(seed) != ed25519.SeedSize {
			return cfg, s, fmt.Errorf("config: token key is %d bytes, want %d (generate one with: head -c32 /dev/urandom | base64)", len(seed), ed25519.SeedSize)
		}
		s.tokenSeed = seed
	case embedded:
	case alone:
		s.tokenSeed = make([]byte, ed25519.SeedSize)
		_, _ = rand.Read(s.tokenSeed)
		s.warnings = append(s.warnings, "no token key configured: using an ephemeral one, so tokens stop working when the process restarts (set --token-key or WAGGLE_TOKEN_KEY)")
	default:
		return cfg, s, fmt.Errorf("config: roles %v need a token key shared by every process (set --token-key or WAGGLE_TOKEN_KEY; generate one with: head -c32 /dev/urandom | base64)", cfg.Roles)
	}
	switch {
	case cfg.InternalSecret != "":
		if len(cfg.InternalSecret) < 16 {
			return cfg, s, errors.New("config: internal secret must be at least 16 characters")
		}
		s.internalSecret = cfg.InternalSecret
	case embedded:
	case alone:
		s.internalSecret = randomHex(32)
	default:
		return cfg, s, fmt.Errorf("config: roles %v need an internal secret shared by every process (set --internal-secret or WAGGLE_INTERNAL_SECRET)", cfg.Roles)
	}

	// Edges call chat and presence; chat calls presence to find sessions.
	// Presence asks chat whose presence a user may see.
	needChat := (cfg.Roles.Has(RoleEdge) || cfg.Roles.Has(RolePresence)) && !cfg.Roles.Has(RoleChat)
	needPresence := (cfg.Roles.Has(RoleEdge) || cfg.Roles.Has(RoleChat)) && !cfg.Roles.Has(RolePresence)
	for _, peer := range []struct {
		name, url, flag string
		needed          bool
	}{
		{"chat", cfg.ChatURL, "--chat-url or WAGGLE_CHAT_URL", needChat},
		{"presence", cfg.PresenceURL, "--presence-url or WAGGLE_PRESENCE_URL", needPresence},
	} {
		if !peer.needed {
			continue
		}
		if peer.url == "" {
			return cfg, s, fmt.Errorf("config: roles %v need the %s service's URL (set %s)", cfg.Roles, peer.name, peer.flag)
		}
		if u, err := url.Parse(peer.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, s, fmt.Errorf("config: %s URL %q must look like http://host:port", peer.name, peer.url)
		}
	}
	return cfg, s, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func defaultEdgeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "edge"
	}
	return host + "-" + randomHex(4)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
