package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wagglechat/waggle/bench"
)

// options are the command line: the run, and how to report it.
type options struct {
	cfg bench.Config
	common
}

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("waggle-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: waggle-bench [load] [flags]\n\nwaggle-bench loads Waggle edges with SDK sessions and measures delivery. See docs/benchmarks.md.\n"+
			"Other commands: fanout, idle, matrix, floor-server, centrifugo-config (waggle-bench <command> -h).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	c := &o.cfg
	edges := fs.String("edges", "http://127.0.0.1:8080", "comma-separated edge URLs; TCP connections are spread over them round robin")
	fs.StringVar(&c.API, "api", "", "URL of AccountService and ConversationService for the set-up (default: the first edge)")
	fs.StringVar(&c.Protocol, "protocol", bench.ProtocolConnect, "connect (connect-go) or grpc (grpc-go)")
	fs.IntVar(&c.Users, "users", 100, "users to register")
	fs.IntVar(&c.ConnsPerUser, "conns-per-user", 1, "sessions (devices) per user")
	fs.IntVar(&c.StreamsPerConn, "streams-per-conn", 1, "sessions sharing one TCP connection (1: one connection each, like phones)")
	shape := fs.String("shape", string(bench.ShapeGroups), "direct (pairs), groups (of --group-size) or large (one group of --group-size, default every user)")
	fs.IntVar(&c.GroupSize, "group-size", 0, "members per group (groups: default 10; large: default --users)")
	fs.Float64Var(&c.Rate, "rate", 100, "total sends per second")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "time sending before measuring")
	fs.DurationVar(&c.Drain, "drain", 3*time.Second, "time to wait for deliveries after the last ack")
	fs.IntVar(&c.PayloadBytes, "size", 100, "payload bytes per message (at least 12)")
	fs.DurationVar(&c.SendTimeout, "send-timeout", 10*time.Second, "deadline of each send")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 10000, "sends awaiting their ack beyond which due sends are skipped (and counted)")
	fs.StringVar(&c.State, "state", "", "file keeping the registered users between runs against one server (later runs refresh their tokens instead of registering)")
	pids := fs.String("pids", "", "comma-separated server process ids whose RSS and CPU to report (Linux /proc)")
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return o, usageError{err}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	var err error
	c.Edges = splitURLs(*edges)
	c.Shape = bench.Shape(*shape)
	c.PIDs, err = parsePIDs(*pids)
	return o, err
}

// splitURLs splits a comma-separated list of base URLs.
func splitURLs(list string) []string {
	var urls []string
	for e := range strings.SplitSeq(list, ",") {
		if e = strings.TrimSpace(e); e != "" {
			urls = append(urls, strings.TrimSuffix(e, "/"))
		}
	}
	return urls
}

// parsePIDs parses a comma-separated list of process ids.
func parsePIDs(list string) ([]int, error) {
	var pids []int
	for p := range strings.SplitSeq(list, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			return nil, usageError{fmt.Errorf("--pids: %q is not a process id", p)}
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// raiseFileLimit lifts the soft open-files limit to the hard one and
// returns it: every session with its own TCP connection is a file.
func raiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read the open-files limit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("raise the open-files limit: %w", err)
		}
	}
	return l.Cur, nil
}

// filesNeeded is how many descriptors the run's connections take, with
// room for the set-up's connections, the runtime and stdio.
func filesNeeded(c bench.Config) uint64 {
	sessions := c.Users * max(c.ConnsPerUser, 1)
	return uint64((sessions+max(c.StreamsPerConn, 1)-1)/max(c.StreamsPerConn, 1)) + 64
}

// run runs one command: the load generator unless args name another.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if cmd, ok := commands[args[0]]; ok {
			return cmd(ctx, args[1:], stdout, stderr)
		}
	}
	return runLoad(ctx, args, stdout, stderr)
}

// commands are waggle-bench's modes besides the load generator (also
// reached as "load").
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"load":              runLoad,
	"fanout":            runFanout,
	"idle":              runIdle,
	"idle-child":        runIdleChild, // hidden: a process of idle --procs
	"matrix":            runMatrix,
	"floor-server":      runFloorServer,
	"centrifugo-config": runCentrifugoConfig,
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "waggle-bench: %v\n", err)
		return 2
	}
	log := o.logger(stderr)
	o.cfg.Logger = log
	limit, err := raiseFileLimit()
	if err != nil {
		fmt.Fprintf(stderr, "waggle-bench: %v\n", err)
		return 1
	}
	if need := filesNeeded(o.cfg); need > limit {
		fmt.Fprintf(stderr, "waggle-bench: %d connections need about %d open files; this process may have %d (the hard limit). "+
			"Share connections (--streams-per-conn) or run several waggle-bench processes.\n", need-64, need, limit)
		return 2
	}
	log.Info("waggle-bench: open files", "limit", limit, "needed", filesNeeded(o.cfg))
	if !o.quiet {
		o.cfg.Progress = func(p bench.Progress) { bench.WriteProgress(stderr, p) }
	}
	res, err := bench.Run(ctx, o.cfg)
	var bad bench.ConfigError
	if errors.As(err, &bad) {
		fmt.Fprintf(stderr, "waggle-%v\n", err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "waggle-%v\n", err)
		return 1
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "waggle-bench: %v\n", err)
			return 1
		}
		return 0
	}
	bench.WriteTable(stdout, res)
	return 0
}
