package bench

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what a run measured. Counts and rates cover the measured
// window (after the warmup); latencies are of messages sent in it.
type Result struct {
	Start          time.Time     `json:"start"`
	Shape          Shape         `json:"shape"`
	Users          int           `json:"users"`
	ConnsPerUser   int           `json:"conns_per_user"`
	StreamsPerConn int           `json:"streams_per_conn"`
	GroupSize      int           `json:"group_size"`
	Conversations  int           `json:"conversations"`
	Rate           float64       `json:"rate"`
	Duration       time.Duration `json:"duration_ns"`
	Warmup         time.Duration `json:"warmup_ns"`
	Protocol       string        `json:"protocol"`
	Edges          []string      `json:"edges"`
	PayloadBytes   int           `json:"payload_bytes"`

	RegisterTime     time.Duration `json:"register_time_ns"`
	ConversationTime time.Duration `json:"conversation_time_ns"`
	ConnectTime      time.Duration `json:"connect_time_ns"`

	Sessions   int   `json:"sessions"`  // SDK clients
	TCPConns   int   `json:"tcp_conns"` // transports they share
	Connected  int   `json:"connected"` // up before sending started
	HeldMin    int64 `json:"held_min"`  // fewest streams open while measuring
	HeldAtEnd  int64 `json:"held_at_end"`
	Reconnects int64 `json:"reconnects"`

	Issued      int64            `json:"issued"` // sends started, warmup included
	Acked       int64            `json:"acked"`
	AckedPerSec float64          `json:"acked_per_sec"`
	Errors      map[string]int64 `json:"errors"`

	Expected        int64   `json:"expected_deliveries"`
	Delivered       int64   `json:"delivered"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`

	Latency    Summary `json:"latency"`     // send start to delivery on another session
	AckLatency Summary `json:"ack_latency"` // send start to the sender's ack

	// What the SDK clients repaired.
	Gaps       int64 `json:"gaps"`
	Syncs      int64 `json:"syncs"`
	Duplicates int64 `json:"duplicates"`
	Resends    int64 `json:"resends"`

	Servers  []ServerStats `json:"servers"`
	BenchCPU time.Duration `json:"bench_cpu_ns"` // this process, measured window
	// Idle is the machine's idle share over the measured window (100 =
	// every core idle; -1 not measured): what else ran beside the bench
	// and the servers, when the server's own CPU is known.
	Idle float64 `json:"idle_percent"`
}

// ServerStats is one server process, from /proc.
type ServerStats struct {
	PID        int           `json:"pid"`
	RSSBefore  int64         `json:"rss_before_bytes"` // before the sessions connected
	RSS        int64         `json:"rss_bytes"`        // at the end
	MaxRSS     int64         `json:"max_rss_bytes"`    // highest sampled during the run (1 Hz)
	PeakRSS    int64         `json:"peak_rss_bytes"`   // VmHWM: highest since the process started
	CPU        time.Duration `json:"cpu_ns"`           // used in the measured window
	CPUPercent float64       `json:"cpu_percent"`      // of one core, in the measured window
	OpenFiles  int64         `json:"open_files_limit"` // soft limit
}

// procWatch follows server processes through a run.
type procWatch struct {
	pids         []int
	log          *slog.Logger
	before       map[int]procSample
	start, end   map[int]procSample
	maxRSS       map[int]int64
	window       time.Duration
	warnedFailed map[int]bool
	// The machine's CPU at the measured window's start and end.
	machineStart, machineEnd machineCPU
	machineErr               error
}

func newProcWatch(pids []int, log *slog.Logger) *procWatch {
	return &procWatch{pids: pids, log: log, before: map[int]procSample{}, start: map[int]procSample{}, end: map[int]procSample{},
		maxRSS: map[int]int64{}, warnedFailed: map[int]bool{}}
}

func (p *procWatch) read(pid int) (procSample, bool) {
	s, err := readProc(pid)
	if err != nil {
		if !p.warnedFailed[pid] {
			p.log.Warn("bench: cannot read server process", "pid", pid, "err", err)
			p.warnedFailed[pid] = true
		}
		return s, false
	}
	p.maxRSS[pid] = max(p.maxRSS[pid], s.RSS)
	return s, true
}

// sample reads every process's RSS and returns their sum.
func (p *procWatch) sample() int64 {
	var sum int64
	for _, pid := range p.pids {
		if s, ok := p.read(pid); ok {
			sum += s.RSS
		}
	}
	return sum
}

func (p *procWatch) markBefore() {
	for _, pid := range p.pids {
		if s, ok := p.read(pid); ok {
			p.before[pid] = s
		}
	}
}

func (p *procWatch) markStart() {
	p.machineStart, p.machineErr = readMachineCPU()
	for _, pid := range p.pids {
		if s, ok := p.read(pid); ok {
			p.start[pid] = s
		}
	}
}

func (p *procWatch) markEnd(window time.Duration) {
	p.window = window
	if p.machineErr == nil {
		p.machineEnd, p.machineErr = readMachineCPU()
	}
	for _, pid := range p.pids {
		if s, ok := p.read(pid); ok {
			p.end[pid] = s
		}
	}
}

// idle is the machine's idle share over the measured window, -1 if
// /proc/stat could not tell.
func (p *procWatch) idle() float64 {
	if p.machineErr != nil || p.machineStart.total == 0 { // unread, or never measuring
		return -1
	}
	idle, err := p.machineStart.idleUntil(p.machineEnd)
	if err != nil {
		return -1
	}
	return idle
}

func (p *procWatch) results() []ServerStats {
	var out []ServerStats
	for _, pid := range p.pids {
		end, ok := p.end[pid]
		if !ok {
			continue
		}
		s := ServerStats{PID: pid, RSSBefore: p.before[pid].RSS, RSS: end.RSS, MaxRSS: p.maxRSS[pid], PeakRSS: end.Peak, OpenFiles: openFileLimit(pid)}
		if start, ok := p.start[pid]; ok && p.window > 0 {
			s.CPU = end.CPU - start.CPU
			s.CPUPercent = 100 * s.CPU.Seconds() / p.window.Seconds()
		}
		out = append(out, s)
	}
	return out
}

// WriteProgress writes one progress line.
func WriteProgress(w io.Writer, p Progress) {
	fmt.Fprintf(w, "%4ds %-7s streams=%d sent=%d/s acked=%d/s delivered=%d/s errors=%d in-flight=%d p50=%s p99=%s max=%s",
		int(p.Elapsed.Seconds()), p.Phase, p.Streams, p.Sent, p.Acked, p.Delivered, p.Errors, p.InFlight,
		ms(p.Latency.P50), ms(p.Latency.P99), ms(p.Latency.Max))
	if p.ServerRSS > 0 {
		fmt.Fprintf(w, " server-rss=%s", mib(p.ServerRSS))
	}
	fmt.Fprintln(w)
}

// WriteTable writes r as a two-column table for people.
func WriteTable(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, a...)) }
	group := ""
	if r.Shape != ShapeDirect {
		group = fmt.Sprintf(" of %d", r.GroupSize)
	}
	row("run", "%s, %s%s, %d users x %d sessions (%d per TCP connection), %s over %s",
		r.Start.Format(time.RFC3339), r.Shape, group, r.Users, r.ConnsPerUser, r.StreamsPerConn, r.Protocol, strings.Join(r.Edges, " "))
	row("load", "%.0f msgs/s of %d-byte payloads for %s after %s warmup", r.Rate, r.PayloadBytes, r.Duration, r.Warmup)
	row("setup", "%d users registered in %s, %d conversations in %s, %d of %d sessions up in %s",
		r.Users, r.RegisterTime.Round(time.Millisecond), r.Conversations, r.ConversationTime.Round(time.Millisecond),
		r.Connected, r.Sessions, r.ConnectTime.Round(time.Millisecond))
	row("connections", "%d streams held at the end (fewest while measuring %d) over %d TCP connections; %d reconnects",
		r.HeldAtEnd, r.HeldMin, r.TCPConns, r.Reconnects)
	row("sends", "%d acked, %.1f/s; %d failed", r.Acked, r.AckedPerSec, sumErrors(r.Errors))
	pct := 100.0
	if r.Expected > 0 {
		pct = 100 * float64(r.Delivered) / float64(r.Expected)
	}
	row("deliveries", "%d of %d expected (%.2f%%), %.1f/s", r.Delivered, r.Expected, pct, r.DeliveredPerSec)
	row("latency", "send to delivery: p50 %s  p95 %s  p99 %s  max %s", ms(r.Latency.P50), ms(r.Latency.P95), ms(r.Latency.P99), ms(r.Latency.Max))
	row("", "send to ack:      p50 %s  p95 %s  p99 %s  max %s", ms(r.AckLatency.P50), ms(r.AckLatency.P95), ms(r.AckLatency.P99), ms(r.AckLatency.Max))
	for _, code := range slices.Sorted(maps.Keys(r.Errors)) {
		row("errors", "%s: %d", code, r.Errors[code])
	}
	row("client repairs", "%d gaps, %d syncs, %d duplicates dropped, %d resends", r.Gaps, r.Syncs, r.Duplicates, r.Resends)
	for _, s := range r.Servers {
		perCPU := ""
		if s.CPU > 0 {
			perCPU = fmt.Sprintf(", %.0f deliveries per CPU-second", float64(r.Delivered)/s.CPU.Seconds())
		}
		row("server", "pid %d: RSS %s before the sessions, %s at the end (%s max sampled, %s VmHWM); open files limit %d",
			s.PID, mib(s.RSSBefore), mib(s.RSS), mib(s.MaxRSS), mib(s.PeakRSS), s.OpenFiles)
		row("", "pid %d: CPU %.1fs while measuring = %.0f%% of a core%s", s.PID, s.CPU.Seconds(), s.CPUPercent, perCPU)
	}
	row("bench", "CPU %.1fs = %.0f%% of a core", r.BenchCPU.Seconds(), 100*r.BenchCPU.Seconds()/r.Duration.Seconds())
	if r.Idle >= 0 {
		row("machine", "%.0f%% idle while measuring", r.Idle)
	}
	tw.Flush()
}

func sumErrors(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func mib(b int64) string {
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
