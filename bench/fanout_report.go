package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteFanoutProgress writes one progress line of a fanout run.
func WriteFanoutProgress(w io.Writer, p Progress) {
	fmt.Fprintf(w, "%4ds %-7s sessions=%d sent=%d/s done=%d/s failed=%d/s delivered=%d/s in-flight=%d",
		int(p.Elapsed.Seconds()), p.Phase, p.Streams, p.Sent, p.Acked, p.Errors, p.Delivered, p.InFlight)
	if p.ServerRSS > 0 {
		fmt.Fprintf(w, " server-rss=%s", mib(p.ServerRSS))
	}
	fmt.Fprintln(w)
}

// WriteFanoutTable writes r as a two-column table for people.
func WriteFanoutTable(w io.Writer, r *FanoutResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, a...)) }
	target := r.Target
	if r.Protocol != "" {
		target += " over " + r.Protocol
	}
	row("run", "%s, %s, edges %s, sender on %s", r.Start.Format(time.RFC3339), target, strings.Join(r.Edges, " "), r.API)
	row("load", "%.0f msgs/s of %d-byte payloads for %s after %s warmup, %s drain; %d members, %d online",
		r.Rate, r.PayloadBytes, r.Duration, r.Warmup, r.Drain, r.Members, r.Online)
	row("setup", "%s; %d of %d sessions up in %s", r.SetupTime.Round(time.Millisecond), r.Connected, r.Online, r.ConnectTime.Round(time.Millisecond))
	if r.ConnectFailed > 0 {
		row("", "%d failed to connect, first: %s", r.ConnectFailed, r.ConnectError)
	}
	for _, why := range slices.Sorted(maps.Keys(r.Lost)) {
		row("sessions lost", "%d: %s", r.Lost[why], why)
	}
	if r.IdleBefore >= 0 {
		row("machine", "%.0f%% idle just before sending", r.IdleBefore)
	}
	row("sends", "%d done, %d failed, %d answered after the drain (%d issued with the warmup)", r.SendsDone, sumErrors(r.SendErrors), r.SendsLate, r.Issued)
	for _, code := range slices.Sorted(maps.Keys(r.SendErrors)) {
		row("send errors", "%s: %d", code, r.SendErrors[code])
	}
	row("deliveries", "%d of %d expected (%.2f%%) by the drain's end; %d duplicates, %d gaps", r.Delivered, r.Expected, r.Percent, r.Duplicates, r.Gaps)
	row("latency", "send to receipt: p50 %s  p95 %s  p99 %s  max %s", ms(r.Latency.P50), ms(r.Latency.P95), ms(r.Latency.P99), ms(r.Latency.Max))
	secs := r.Window.Seconds()
	row("CPU", "over %.1fs: server %.2fs (%.0f%% of a core), redis %.2fs, postgres %.2fs, bench %.2fs",
		secs, r.ServerCPU.Seconds(), pct(r.ServerCPU, r.Window), r.RedisCPU.Seconds(), r.PostgresCPU.Seconds(), r.BenchCPU.Seconds())
	row("per CPU-second", "%.0f deliveries (server), %.0f (server + redis + postgres)", r.PerServerCPU, r.PerTotalCPU)
	for _, s := range r.Servers {
		row("server", "pid %d: RSS %s before the sessions, %s at the end (%s max sampled)", s.PID, mib(s.RSSBefore), mib(s.RSS), mib(s.MaxRSS))
	}
	tw.Flush()
}

func pct(d, of time.Duration) float64 {
	if of <= 0 {
		return 0
	}
	return 100 * d.Seconds() / of.Seconds()
}
