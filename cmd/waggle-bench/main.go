// Command waggle-bench is Waggle's load generator: it registers users,
// holds their edge sessions with the Go SDK, sends at a paced rate and
// reports acks, deliveries, end-to-end latency and server memory. See
// docs/benchmarks.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
