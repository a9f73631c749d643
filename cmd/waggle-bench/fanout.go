package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wagglechat/waggle/bench"
	"github.com/wagglechat/waggle/bench/floor"
)

// common are the flags every mode shares: output and diagnostics.
type common struct {
	json     bool
	quiet    bool
	logLevel slog.Level
}

func (c *common) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.json, "json", false, "print the result as JSON on stdout")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelWarn, "diagnostics on stderr: debug, info, warn or error")
}

func (c *common) logger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("waggle-bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: waggle-bench %s [flags]\n\n%s See docs/benchmarks.md.\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, refusing positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// exitCode reports err on stderr and maps it to the exit code: 0 done, 1
// failed, 2 usage.
func exitCode(stderr io.Writer, err error) int {
	var bad bench.ConfigError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue), errors.As(err, &bad):
		fmt.Fprintf(stderr, "waggle-bench: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "waggle-bench: %v\n", err)
	return 1
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fanoutOptions are the fanout command line.
type fanoutOptions struct {
	cfg bench.FanoutConfig
	common
}

func parseFanout(args []string, stderr io.Writer) (fanoutOptions, error) {
	var o fanoutOptions
	fs := newFlagSet("fanout", "fanout measures delivery to one large group (Waggle), to every stream of a bare transport (floor) or to one Centrifugo channel.", stderr)
	c := &o.cfg
	fs.StringVar(&c.Target, "target", bench.TargetWaggle, "waggle, floor or centrifugo")
	fs.StringVar(&c.Protocol, "protocol", bench.ProtocolConnect, "waggle and floor sessions: connect (connect-go over h2c) or grpc (grpc-go)")
	edges := fs.String("edges", "http://127.0.0.1:8080", "comma-separated URLs the sessions connect to, round robin")
	fs.StringVar(&c.API, "api", "", "URL of the sender's API (Waggle: also the set-up's); default the first edge")
	fs.IntVar(&c.Members, "members", 1000, "members of the group (for floor and centrifugo: sessions)")
	fs.IntVar(&c.Online, "online", 0, "members holding a session, the sender's included (default every member)")
	fs.Float64Var(&c.Rate, "rate", 10, "messages a second")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured sending")
	fs.DurationVar(&c.Warmup, "warmup", 0, "sending before measuring")
	fs.DurationVar(&c.Drain, "drain", 2*time.Second, "wait for deliveries after the last send")
	fs.DurationVar(&c.IdleSample, "idle-sample", 2*time.Second, "measure the machine's idle share this long before sending (negative: skip)")
	fs.IntVar(&c.PayloadBytes, "size", 200, "payload bytes per message")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 1000, "sends awaiting their answer beyond which due sends are skipped (and counted)")
	fs.DurationVar(&c.SendTimeout, "send-timeout", 10*time.Second, "deadline of each send")
	fs.StringVar(&c.State, "state", "", "file keeping the Waggle set-up (members, tokens, group) between runs")
	fs.BoolVar(&c.SetupOnly, "setup-only", false, "only set up (Waggle: register or refresh) and exit")
	fs.StringVar(&c.Centrifugo.Secret, "centrifugo-secret", bench.CentrifugoDefaults.Secret, "Centrifugo's client.token.hmac_secret_key")
	fs.StringVar(&c.Centrifugo.APIKey, "centrifugo-api-key", bench.CentrifugoDefaults.APIKey, "Centrifugo's http_api.key")
	fs.StringVar(&c.Centrifugo.Channel, "centrifugo-channel", bench.CentrifugoDefaults.Channel, "the channel")
	pids := fs.String("pids", "", "comma-separated server process ids whose CPU and RSS to report")
	o.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return o, err
	}
	c.Edges = splitURLs(*edges)
	var err error
	c.PIDs, err = parsePIDs(*pids)
	return o, err
}

func runFanout(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFanout(args, stderr)
	if err != nil {
		return exitCode(stderr, err)
	}
	o.cfg.Logger = o.logger(stderr)
	if code := checkFiles(stderr, o.cfg.Online); code != 0 {
		return code
	}
	if !o.quiet {
		o.cfg.Progress = func(p bench.Progress) { bench.WriteFanoutProgress(stderr, p) }
	}
	res, err := bench.RunFanout(ctx, o.cfg)
	if err != nil {
		return exitCode(stderr, err)
	}
	switch {
	case o.json:
		return exitCode(stderr, writeJSON(stdout, res))
	case o.cfg.SetupOnly:
		fmt.Fprintf(stdout, "set up a group of %d members on %s in %s\n", res.Members, res.API, res.SetupTime.Round(time.Millisecond))
	default:
		bench.WriteFanoutTable(stdout, res)
	}
	return 0
}

// checkFiles raises the open-files limit and refuses a run whose
// connections would not fit (exit code 2).
func checkFiles(stderr io.Writer, conns int) int {
	limit, err := raiseFileLimit()
	if err != nil {
		return exitCode(stderr, err)
	}
	if need := uint64(conns) + 64; need > limit {
		fmt.Fprintf(stderr, "waggle-bench: %d connections need about %d open files; this process may have %d (the hard limit). "+
			"Spread them over child processes (idle --procs) or several waggle-bench processes.\n", conns, need, limit)
		return 2
	}
	return 0
}

func parseIdle(args []string, stderr io.Writer) (bench.IdleConfig, common, error) {
	var c bench.IdleConfig
	var o common
	fs := newFlagSet("idle", "idle holds sessions that only keep alive and reports the server's RSS per session.", stderr)
	fs.StringVar(&c.Target, "target", bench.TargetWaggle, "waggle, floor or centrifugo")
	fs.StringVar(&c.Protocol, "protocol", bench.ProtocolConnect, "waggle and floor sessions: connect or grpc")
	edges := fs.String("edges", "http://127.0.0.1:8080", "comma-separated URLs the sessions connect to, round robin")
	fs.StringVar(&c.API, "api", "", "URL of Waggle's set-up (default the first edge)")
	fs.IntVar(&c.Sessions, "sessions", 1000, "sessions to hold, each on a TCP connection of its own")
	fs.IntVar(&c.Members, "members", 0, "Waggle: members whose tokens the sessions share, round robin (default min(sessions, 1000))")
	fs.StringVar(&c.State, "state", "", "file keeping the Waggle set-up between runs")
	fs.IntVar(&c.Procs, "procs", 0, "child processes holding the sessions (for more connections than one process's open files allow)")
	fs.DurationVar(&c.Settle, "settle", 10*time.Second, "least wait once connected before reading the RSS")
	fs.DurationVar(&c.SettleMax, "settle-max", 60*time.Second, "most wait for the RSS to be stable")
	fs.StringVar(&c.Centrifugo.Secret, "centrifugo-secret", bench.CentrifugoDefaults.Secret, "Centrifugo's client.token.hmac_secret_key")
	fs.StringVar(&c.Centrifugo.Channel, "centrifugo-channel", bench.CentrifugoDefaults.Channel, "the channel")
	pids := fs.String("pids", "", "comma-separated server process ids whose RSS to read (required)")
	o.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return c, o, err
	}
	c.Edges = splitURLs(*edges)
	var err error
	c.PIDs, err = parsePIDs(*pids)
	return c, o, err
}

func runIdle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, o, err := parseIdle(args, stderr)
	if err != nil {
		return exitCode(stderr, err)
	}
	cfg.Logger = o.logger(stderr)
	if cfg.Procs > 0 {
		if cfg.Self, err = os.Executable(); err != nil {
			return exitCode(stderr, err)
		}
	} else if code := checkFiles(stderr, cfg.Sessions); code != 0 {
		return code
	}
	res, err := bench.RunIdle(ctx, cfg)
	if err != nil {
		return exitCode(stderr, err)
	}
	if o.json {
		return exitCode(stderr, writeJSON(stdout, res))
	}
	target := res.Target
	if res.Protocol != "" {
		target += " over " + res.Protocol
	}
	fmt.Fprintf(stdout, "idle %s: %d of %d sessions up in %s (%d child processes); server RSS %.1f MiB before, %.1f MiB after %s (stable: %v): %.1f KB per session\n",
		target, res.Connected, res.Sessions, res.ConnectTime.Round(time.Millisecond), res.Procs, float64(res.RSSBefore)/(1<<20),
		float64(res.RSSAfter)/(1<<20), res.SettleTime.Round(time.Second), res.Stable, res.KBPerSession)
	if res.ConnectFailed > 0 {
		fmt.Fprintf(stdout, "%d failed to connect, first: %s\n", res.ConnectFailed, res.ConnectError)
	}
	return 0
}

func runIdleChild(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
	if _, err := raiseFileLimit(); err != nil {
		return exitCode(stderr, err)
	}
	return exitCode(stderr, bench.ServeIdleChild(ctx, os.Stdin, stdout))
}

func runFloorServer(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := newFlagSet("floor-server", "floor-server serves a bare EdgeService.Connect and MessageService.SendMessage (no auth, no storage) for fanout --target floor.", stderr)
	transport := fs.String("transport", floor.TransportGRPC, "grpc (grpc-go) or connect (connect-go over net/http, h2c)")
	addr := fs.String("addr", "127.0.0.1:18090", "address to listen on")
	var o common
	o.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return exitCode(stderr, err)
	}
	if *transport != floor.TransportGRPC && *transport != floor.TransportConnect {
		return exitCode(stderr, usageError{fmt.Errorf("--transport %q: want grpc or connect", *transport)})
	}
	if _, err := raiseFileLimit(); err != nil {
		return exitCode(stderr, err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return exitCode(stderr, err)
	}
	return exitCode(stderr, floor.New(o.logger(stderr)).Serve(ctx, l, *transport))
}

func runCentrifugoConfig(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("centrifugo-config", "centrifugo-config writes a Centrifugo v6 configuration for fanout --target centrifugo on stdout.", stderr)
	addr := fs.String("addr", "127.0.0.1:18000", "address Centrifugo listens on")
	auth := bench.CentrifugoDefaults
	fs.StringVar(&auth.Secret, "secret", auth.Secret, "client.token.hmac_secret_key")
	fs.StringVar(&auth.APIKey, "api-key", auth.APIKey, "http_api.key")
	if err := parseFlags(fs, args); err != nil {
		return exitCode(stderr, err)
	}
	b, err := bench.CentrifugoConfig(*addr, auth)
	if err != nil {
		return exitCode(stderr, usageError{err})
	}
	_, err = stdout.Write(b)
	return exitCode(stderr, err)
}

func parseMatrix(args []string, stderr io.Writer) (bench.MatrixConfig, common, string, error) {
	var c bench.MatrixConfig
	var o common
	fs := newFlagSet("matrix", "matrix starts waggle serve, the two floor servers and Centrifugo, runs fanout for every target at every rate, interleaved, and prints a markdown table of medians and ranges.", stderr)
	targets := fs.String("targets", strings.Join(bench.MatrixTargets, ","), "comma-separated targets")
	rates := fs.String("rates", "10,100,200,400,600", "comma-separated messages a second")
	fs.IntVar(&c.Reps, "reps", 3, "repetitions of the whole set")
	fs.IntVar(&c.Members, "members", 1000, "members of the group, all online")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured sending per run")
	fs.DurationVar(&c.Warmup, "warmup", 0, "sending before measuring")
	fs.DurationVar(&c.Drain, "drain", 2*time.Second, "wait for deliveries after the last send")
	fs.StringVar(&c.Waggle, "waggle", "", "a waggle binary (default: go build ./cmd/waggle, from the repository's root)")
	fs.StringVar(&c.Centrifugo, "centrifugo", "/tmp/centrifugo-bin/centrifugo", "the centrifugo binary (GOBIN=/tmp/centrifugo-bin go install github.com/centrifugal/centrifugo/v6@v6.9.1)")
	fs.IntVar(&c.BasePort, "base-port", 18600, "first of five consecutive ports on 127.0.0.1")
	fs.DurationVar(&c.Cooldown, "cooldown", 60*time.Second, "most wait before a run for the target's CPU to settle")
	raw := fs.String("raw", "", "file to write every run's result to, as JSON lines")
	o.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return c, o, "", err
	}
	c.Targets = splitURLs(*targets)
	for r := range strings.SplitSeq(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return c, o, "", usageError{fmt.Errorf("--rates: %q is not a positive rate", r)}
		}
		c.Rates = append(c.Rates, v)
	}
	return c, o, *raw, nil
}

func runMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, o, raw, err := parseMatrix(args, stderr)
	if err != nil {
		return exitCode(stderr, err)
	}
	if o.logLevel > slog.LevelInfo && !o.quiet {
		o.logLevel = slog.LevelInfo // a line per run
	}
	cfg.Logger = o.logger(stderr)
	if cfg.Self, err = os.Executable(); err != nil {
		return exitCode(stderr, err)
	}
	if raw != "" {
		f, err := os.Create(raw)
		if err != nil {
			return exitCode(stderr, err)
		}
		defer f.Close()
		cfg.RawOut = f
	}
	runs, err := bench.RunMatrix(ctx, &cfg)
	// An interrupted matrix still shows the runs it finished.
	if len(runs) > 0 {
		if o.json {
			err = errors.Join(err, writeJSON(stdout, runs))
		} else {
			bench.WriteMatrixTable(stdout, &cfg, runs)
		}
	}
	return exitCode(stderr, err)
}
