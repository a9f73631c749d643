package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/wagglechat/waggle/app"
	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/edge"
	"github.com/wagglechat/waggle/services/account"
	"github.com/wagglechat/waggle/services/presence"
)

// command is a subcommand of waggle.
type command struct {
	name    string
	summary string
	roles   app.Roles // roles a server command runs; 0 for the others
}

var commands = []command{
	{"serve", "run every role in one process", app.RoleServe},
	{"edge", "run the connection layer (EdgeService) only", app.RoleEdge},
	{"chat", "run accounts, contacts, conversations and messages (uses Postgres)", app.RoleChat},
	{"presence", "run presence and the session registry", app.RolePresence},
	{"migrate", "apply the database migrations and exit", 0},
	{"resync-blockers", "rebuild Redis's copy of the block lists from Postgres (after Redis lost data) and exit", 0},
	{"version", "print the version and exit", 0},
}

func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// invocation is a parsed command line.
type invocation struct {
	cmd       command
	app       app.Config
	logLevel  slog.Level
	logFormat string
	help      bool // --help was asked for cmd (or for waggle itself when cmd is zero)
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// flagSet is a command's flags, each with the environment variable it falls
// back to, in the order they are shown in --help.
type flagSet struct {
	*flag.FlagSet
	env   map[string]string
	order []string
}

func (fs *flagSet) add(name, env string) {
	fs.env[name] = env
	fs.order = append(fs.order, name)
}

// newFlagSet declares the flags of cmd, writing into inv.
func newFlagSet(cmd command, inv *invocation) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(cmd.name, flag.ContinueOnError), env: map[string]string{}}
	fs.SetOutput(io.Discard) // errors are reported by the caller, in one line
	c := &inv.app
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, def, usage)
		fs.add(name, env)
	}
	boolean := func(p *bool, name, env, usage string) {
		fs.BoolVar(p, name, false, usage)
		fs.add(name, env)
	}
	roles := cmd.roles
	server := roles != 0
	usesPostgres := roles.Has(app.RoleChat) || cmd.name == "migrate" || cmd.name == "resync-blockers"

	if server {
		str(&c.Addr, "addr", "WAGGLE_ADDR", app.DefaultAddr, `listen address of every service in this process; ":0" picks a free port`)
		str(&c.TLSCertFile, "tls-cert", "WAGGLE_TLS_CERT", "", "PEM certificate file; with --tls-key, serve TLS instead of cleartext")
		str(&c.TLSKeyFile, "tls-key", "WAGGLE_TLS_KEY", "", "PEM private key file for --tls-cert")
		fs.Func("cors-origins", `comma-separated web origins browsers may call from, or "*"`, func(v string) error {
			for _, o := range strings.Split(v, ",") {
				if o = strings.TrimSpace(o); o != "" {
					c.CORSOrigins = append(c.CORSOrigins, o)
				}
			}
			return nil
		})
		fs.add("cors-origins", "WAGGLE_CORS_ORIGINS")
	}
	// A server given neither Postgres nor Redis runs embedded (serve) or
	// refuses to start (the split roles): no default URL. The commands
	// that only work on them keep the local defaults.
	if usesPostgres {
		if server {
			str(&c.PostgresURL, "postgres", "WAGGLE_POSTGRES_URL", "", serverURLUsage(roles, "Postgres URL", "--redis"))
		} else {
			str(&c.PostgresURL, "postgres", "WAGGLE_POSTGRES_URL", app.DefaultPostgresURL, "Postgres URL")
		}
	}
	if server && usesPostgres {
		boolean(&c.SkipMigrate, "no-migrate", "WAGGLE_NO_MIGRATE", "do not apply the Postgres migrations at start")
	}
	if server {
		str(&c.RedisURL, "redis", "WAGGLE_REDIS_URL", "", serverURLUsage(roles, "Redis URL (sessions and the bus)", "--postgres"))
	} else if cmd.name == "resync-blockers" {
		str(&c.RedisURL, "redis", "WAGGLE_REDIS_URL", app.DefaultRedisURL, "Redis URL")
	}
	if server || cmd.name == "resync-blockers" {
		str(&c.RedisPrefix, "redis-prefix", "WAGGLE_REDIS_PREFIX", app.DefaultRedisPrefix, "prefix of every Redis key and channel")
	}
	if roles == app.RoleServe {
		str(&c.DataDir, "data-dir", "WAGGLE_DATA_DIR", app.DefaultDataDir, "directory of the embedded stack's database, token key and internal secret (created on first start; one process at a time); unused with --postgres and --redis")
	}
	if server {
		str(&c.TokenKey, "token-key", "WAGGLE_TOKEN_KEY", "", "base64 32-byte Ed25519 seed signing access tokens, the same in every process (required unless serve; embedded serve keeps one in --data-dir; generate: head -c32 /dev/urandom | base64)")
		str(&c.InternalSecret, "internal-secret", "WAGGLE_INTERNAL_SECRET", "", "shared secret of calls between processes, at least 16 characters (required unless serve; embedded serve keeps one in --data-dir)")
	}
	if (roles.Has(app.RoleEdge) || roles.Has(app.RolePresence)) && !roles.Has(app.RoleChat) {
		str(&c.ChatURL, "chat-url", "WAGGLE_CHAT_URL", "", "URL of the chat service, e.g. http://chat:8080 (required)")
	}
	if (roles.Has(app.RoleEdge) || roles.Has(app.RoleChat)) && !roles.Has(app.RolePresence) {
		str(&c.PresenceURL, "presence-url", "WAGGLE_PRESENCE_URL", "", "URL of the presence service, e.g. http://presence:8080 (required)")
	}
	if roles.Has(app.RoleChat) {
		fs.Float64Var(&c.SendRate, "send-rate", 20, "messages a second each user may send (per chat process)")
		fs.add("send-rate", "WAGGLE_SEND_RATE")
		fs.IntVar(&c.SendBurst, "send-burst", 100, "burst of messages a user may send above --send-rate")
		fs.add("send-burst", "WAGGLE_SEND_BURST")
		for _, l := range []struct {
			p         *int
			name, env string
			def       int
			usage     string
		}{
			{&c.AccountLimits.Login, "login-limit", "WAGGLE_LOGIN_LIMIT", account.DefaultLimits.Login, "logins a minute to one username from one source address; negative: no limit"},
			{&c.AccountLimits.LoginAddress, "login-address-limit", "WAGGLE_LOGIN_ADDRESS_LIMIT", account.DefaultLimits.LoginAddress, "logins a minute from one source address, over all usernames; negative: no limit"},
			{&c.AccountLimits.Register, "register-limit", "WAGGLE_REGISTER_LIMIT", account.DefaultLimits.Register, "registrations a minute from one source address; negative: no limit"},
			{&c.AccountLimits.Refresh, "refresh-limit", "WAGGLE_REFRESH_LIMIT", account.DefaultLimits.Refresh, "token refreshes a minute from one source address; negative: no limit"},
			{&c.PasswordHashes, "password-hashes", "WAGGLE_PASSWORD_HASHES", auth.DefaultConcurrentHashes, "argon2id password hashes (64 MiB each) run at once; more logins and registrations wait"},
		} {
			fs.IntVar(l.p, l.name, l.def, l.usage)
			fs.add(l.name, l.env)
		}
		str(&c.PushWebhookURL, "push-webhook-url", "WAGGLE_PUSH_WEBHOOK_URL", "", "URL receiving offline push notifications as signed JSON POSTs; empty: none")
		str(&c.PushWebhookSecret, "push-webhook-secret", "WAGGLE_PUSH_WEBHOOK_SECRET", "", "HMAC-SHA256 key signing the webhook's requests (required with --push-webhook-url)")
	}
	if roles.Has(app.RolePresence) {
		fs.DurationVar(&c.PresenceGrace, "presence-grace", presence.DefaultGrace, "how long a user may be gone before subscribers see them offline")
		fs.add("presence-grace", "WAGGLE_PRESENCE_GRACE")
	}
	if roles.Has(app.RoleEdge) {
		str(&c.EdgeGRPCAddr, "edge-grpc-addr", "WAGGLE_EDGE_GRPC_ADDR", "", "second listener serving EdgeService on grpc-go's own transport (native gRPC clients); empty: none")
		str(&c.EdgeID, "edge-id", "WAGGLE_EDGE_ID", "", "unique name of this edge node; empty means hostname plus a random suffix")
		fs.DurationVar(&c.EdgeWriteInterval, "edge-write-interval", edge.DefaultWriteInterval, "least time between two writes of pushes to one session while they keep coming (pushes meanwhile share a frame); negative: write each at once")
		fs.add("edge-write-interval", "WAGGLE_EDGE_WRITE_INTERVAL")
		fs.DurationVar(&c.EdgeHelloTimeout, "edge-hello-timeout", edge.DefaultHelloTimeout, "a session stream that sends no Hello within this ends (deadline_exceeded)")
		fs.add("edge-hello-timeout", "WAGGLE_EDGE_HELLO_TIMEOUT")
		fs.IntVar(&c.EdgeMaxPendingHellos, "edge-max-pending-hellos", edge.DefaultMaxPendingHellos, "session streams not yet welcomed this edge holds; more are refused at once (resource_exhausted)")
		fs.add("edge-max-pending-hellos", "WAGGLE_EDGE_MAX_PENDING_HELLOS")
		fs.IntVar(&c.EdgeMaxPendingHellosPerConn, "edge-max-pending-hellos-per-conn", edge.DefaultMaxPendingHellosPerConn, "the same, per TCP connection")
		fs.add("edge-max-pending-hellos-per-conn", "WAGGLE_EDGE_MAX_PENDING_HELLOS_PER_CONN")
	}
	if server {
		fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", app.DefaultMaxMessageBytes, "largest RPC message accepted")
		fs.add("max-message-bytes", "WAGGLE_MAX_MESSAGE_BYTES")
		fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "on stop, how long to report NOT_SERVING while still serving")
		fs.add("drain-delay", "WAGGLE_DRAIN_DELAY")
		fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", app.DefaultShutdownTimeout, "on stop, how long to wait for calls and streams to end")
		fs.add("shutdown-timeout", "WAGGLE_SHUTDOWN_TIMEOUT")
	}
	if cmd.name != "version" {
		fs.TextVar(&inv.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
		fs.add("log-level", "WAGGLE_LOG_LEVEL")
		str(&inv.logFormat, "log-format", "WAGGLE_LOG_FORMAT", "text", "log format: text or json")
	}
	return fs
}

// serverURLUsage is the help of a server's --postgres or --redis: what
// happens without it.
func serverURLUsage(roles app.Roles, what, other string) string {
	if roles == app.RoleServe {
		return what + "; with " + other + ", serve runs on Postgres and Redis, and without both, embedded in --data-dir"
	}
	return what + " (required)"
}

// parse reads args (without the program name). A flag wins over its
// environment variable, read with getenv, which wins over the default.
func parse(args []string, getenv func(string) string) (invocation, error) {
	inv := invocation{logFormat: "text"}
	if len(args) == 0 {
		return inv, usageError{"no command given (see waggle --help)"}
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		inv.help = true
		if name == "help" && len(args) > 1 {
			name, args = args[1], args[1:]
			break
		}
		return inv, nil
	}
	cmd, ok := findCommand(name)
	if !ok {
		return inv, usageError{fmt.Sprintf("unknown command %q (see waggle --help)", name)}
	}
	inv.cmd = cmd
	if inv.help {
		return inv, nil
	}

	fs := newFlagSet(cmd, &inv)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			inv.help = true
			return inv, nil
		}
		return inv, usageError{fmt.Sprintf("%s: %v (see waggle %s --help)", cmd.name, err, cmd.name)}
	}
	if fs.NArg() > 0 {
		return inv, usageError{fmt.Sprintf("%s: unexpected argument %q (see waggle %s --help)", cmd.name, fs.Arg(0), cmd.name)}
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	for _, name := range fs.order {
		env := fs.env[name]
		if v := getenv(env); v != "" && !explicit[name] {
			if err := fs.Set(name, v); err != nil {
				return inv, usageError{fmt.Sprintf("%s: invalid value %q: %v", env, v, err)}
			}
		}
	}
	if inv.logFormat != "text" && inv.logFormat != "json" {
		return inv, usageError{fmt.Sprintf("log format %q: want text or json", inv.logFormat)}
	}
	inv.app.Roles = cmd.roles
	return inv, nil
}

// usage writes the help of cmd, or of waggle itself for the zero command.
func usage(w io.Writer, cmd command) {
	if cmd.name == "" {
		fmt.Fprint(w, "Waggle is an instant-messaging backend.\n\nUsage: waggle <command> [flags]\n\nCommands:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range commands {
			fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
		}
		tw.Flush()
		fmt.Fprint(w, "\nRun 'waggle <command> --help' for its flags.\n")
		return
	}
	fmt.Fprintf(w, "Usage: waggle %s [flags]\n\nwaggle %s: %s.\n", cmd.name, cmd.name, cmd.summary)
	var inv invocation
	fs := newFlagSet(cmd, &inv)
	if len(fs.order) == 0 {
		return
	}
	fmt.Fprint(w, "\nFlags, each also read from the environment variable shown (a flag wins over its variable):\n")
	for _, name := range fs.order {
		f := fs.Lookup(name)
		typ, text := flag.UnquoteUsage(f)
		def := f.DefValue
		switch {
		case def == "":
			def = "none"
		case typ == "string":
			def = fmt.Sprintf("%q", def)
		}
		var arg string // a bool flag takes none
		switch typ {
		case "":
		case "string", "value":
			arg = " " + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		default:
			arg = " " + strings.ToUpper(typ)
		}
		fmt.Fprintf(w, "  --%s%s\n      %s\n      env %s, default %s\n", name, arg, text, fs.env[name], def)
	}
}
