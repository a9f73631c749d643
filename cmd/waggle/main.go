// Command waggle runs the Waggle chat backend: every role in one process
// (serve) or one role per process (edge, chat, presence), and migrations.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/wagglechat/waggle/app"
)

// version is set at build time: -ldflags "-X main.version=...".
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts a graceful stop, a second one kills.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code: 0 on success,
// 1 when the command fails, 2 for a usage mistake.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	inv, err := parse(args, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "waggle: %v\n", err)
		return 2
	}
	if inv.help {
		usage(stdout, inv.cmd)
		return 0
	}
	log := newLogger(stderr, inv)
	switch inv.cmd.name {
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "migrate":
		err = app.Migrate(ctx, inv.app, log)
	case "resync-blockers":
		err = app.ResyncBlockers(ctx, inv.app, log)
	default:
		err = app.Run(ctx, inv.app, log)
	}
	if err != nil {
		fmt.Fprintf(stderr, "waggle: %s\n", oneLine(err))
		return 1
	}
	return 0
}

func newLogger(w io.Writer, inv invocation) *slog.Logger {
	opts := &slog.HandlerOptions{Level: inv.logLevel}
	if inv.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	v := version
	if v == "" {
		v = "(devel)"
		if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
			v = info.Main.Version
		}
	}
	return fmt.Sprintf("waggle %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// oneLine flattens a multi-line error (pgx lists every connection attempt
// on its own line) so the failure is one line, dropping repeated lines.
func oneLine(err error) string {
	var b strings.Builder
	prev := ""
	for line := range strings.Lines(err.Error()) {
		line = strings.TrimSpace(line)
		if line == "" || line == prev {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(prev, ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
		prev = line
	}
	return b.String()
}
