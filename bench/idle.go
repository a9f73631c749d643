package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"time"
)

// IdleConfig is one idle-memory run: N sessions that only keep alive
// (pings, heartbeats), and the server's RSS before and after.
type IdleConfig struct {
	Target   string   // TargetWaggle, TargetFloor or TargetCentrifugo. Required.
	Protocol string   // waggle and floor: ProtocolConnect (default) or ProtocolGRPC
	Edges    []string // required
	API      string   // Waggle's set-up. Default Edges[0].
	Sessions int      // required
	// Members of the Waggle group whose tokens the sessions use, round
	// robin. Default min(Sessions, 1000).
	Members int
	State   string // the Waggle set-up's file, as for fanout runs
	// Procs spreads the sessions over that many child processes (Self
	// idle-child) when one process cannot hold them all (open files).
	// Default 0: this process holds them.
	Procs int
	Self  string // the waggle-bench executable, for Procs
	// Settle is the least time to wait once connected; after it the RSS is
	// read every second until it is stable or SettleMax has passed.
	// Defaults 10 s and 60 s.
	Settle, SettleMax time.Duration
	ConnectParallel   int // default 100
	PIDs              []int
	Centrifugo        CentrifugoAuth
	Logger            *slog.Logger
}

// IdleResult is the server's memory with and without the sessions.
type IdleResult struct {
	Start         time.Time     `json:"start"`
	Target        string        `json:"target"`
	Protocol      string        `json:"protocol,omitempty"`
	Sessions      int           `json:"sessions"`
	Connected     int           `json:"connected"`
	ConnectFailed int           `json:"connect_failed"`
	ConnectError  string        `json:"connect_error,omitempty"`
	Procs         int           `json:"procs"`
	ConnectTime   time.Duration `json:"connect_time_ns"`
	SettleTime    time.Duration `json:"settle_time_ns"`
	Stable        bool          `json:"stable"` // the RSS settled before SettleMax
	RSSBefore     int64         `json:"rss_before_bytes"`
	RSSAfter      int64         `json:"rss_after_bytes"`
	KBPerSession  float64       `json:"kb_per_session"`
}

func (c *IdleConfig) fanoutConfig() (*FanoutConfig, error) {
	if c.Sessions < 1 {
		return nil, configErrorf("sessions: want at least 1")
	}
	if len(c.PIDs) == 0 {
		return nil, configErrorf("idle runs need the server's --pids")
	}
	if c.Procs > 0 && c.Self == "" {
		return nil, configErrorf("child processes need the bench's own executable")
	}
	members := c.Members
	if members == 0 {
		members = max(2, min(c.Sessions, 1000))
	}
	// Only the set-up and the sessions of a fanout run: it sends nothing.
	fc := &FanoutConfig{Target: c.Target, Protocol: c.Protocol, Edges: c.Edges, API: c.API, Members: members,
		State: c.State, SetupOnly: c.Target == TargetWaggle, Rate: 1, Centrifugo: c.Centrifugo, Logger: c.Logger}
	if err := fc.setDefaults(); err != nil {
		return nil, err
	}
	if c.Settle == 0 {
		c.Settle = 10 * time.Second
	}
	if c.SettleMax == 0 {
		c.SettleMax = 60 * time.Second
	}
	if c.ConnectParallel == 0 {
		c.ConnectParallel = 100
	}
	return fc, nil
}

// RunIdle connects the sessions, waits for the server to settle and
// reports its RSS per session.
func RunIdle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	fc, err := cfg.fanoutConfig()
	if err != nil {
		return nil, err
	}
	log := fc.Logger
	plan, err := preparePlan(ctx, fc)
	if err != nil {
		return nil, err
	}
	res := &IdleResult{Start: time.Now().UTC(), Target: cfg.Target, Sessions: cfg.Sessions, Procs: cfg.Procs}
	if cfg.Target != TargetCentrifugo {
		res.Protocol = fc.Protocol
	}
	procs := newProcWatch(cfg.PIDs, log)
	// Let the set-up's garbage go first: refreshes and registrations.
	time.Sleep(time.Second)
	res.RSSBefore = procs.sample()

	t := time.Now()
	w := &window{} // counts nothing
	if cfg.Procs > 0 {
		children, err := startChildren(ctx, cfg, plan)
		defer children.stop()
		if err != nil {
			return nil, err
		}
		res.Connected, res.ConnectFailed, res.ConnectError = children.connected, children.failed, children.firstErr
	} else {
		sessions, _, failed, firstErr := connectAll(ctx, plan, cfg.Sessions, cfg.ConnectParallel, w)
		defer closeAll(sessions)
		res.Connected, res.ConnectFailed, res.ConnectError = cfg.Sessions-failed, failed, firstErr
	}
	res.ConnectTime = time.Since(t)
	log.Info("bench: idle sessions up", "connected", res.Connected, "failed", res.ConnectFailed, "in", res.ConnectTime)
	if res.Connected == 0 {
		return nil, fmt.Errorf("bench: no session could connect to %v: %s", cfg.Edges, res.ConnectError)
	}

	t = time.Now()
	res.RSSAfter, res.Stable = settle(ctx, procs, cfg.Settle, cfg.SettleMax)
	res.SettleTime = time.Since(t)
	res.KBPerSession = float64(res.RSSAfter-res.RSSBefore) / 1024 / float64(res.Connected)
	return res, nil
}

// settle waits at least least, then until three readings a second apart
// are within 1 % (or 1 MiB) of each other, or most has passed.
func settle(ctx context.Context, procs *procWatch, least, most time.Duration) (rss int64, stable bool) {
	start := time.Now()
	select {
	case <-ctx.Done():
		return procs.sample(), false
	case <-time.After(least):
	}
	prev, calm := procs.sample(), 0
	for time.Since(start) < most {
		select {
		case <-ctx.Done():
			return prev, false
		case <-time.After(time.Second):
		}
		cur := procs.sample()
		if d := cur - prev; max(d, -d) <= max(cur/100, 1<<20) {
			if calm++; calm >= 2 {
				return cur, true
			}
		} else {
			calm = 0
		}
		prev = cur
	}
	return prev, false
}

// childSpec is what a child process is told on its stdin: which sessions
// of the plan to hold.
type childSpec struct {
	Plan     dialPlan `json:"plan"`
	From     int      `json:"from"`
	To       int      `json:"to"`
	Parallel int      `json:"parallel"`
}

// childReady is a child's one line on stdout once its sessions are up.
type childReady struct {
	Connected int    `json:"connected"`
	Failed    int    `json:"failed"`
	FirstErr  string `json:"first_error,omitempty"`
}

type children struct {
	cmds              []*exec.Cmd
	stdins            []io.Closer
	connected, failed int
	firstErr          string
}

// startChildren starts cfg.Procs children, each holding a share of the
// sessions, and waits until each has connected its share.
func startChildren(ctx context.Context, cfg IdleConfig, plan *dialPlan) (*children, error) {
	ch := &children{}
	ready := make(chan childReady, cfg.Procs)
	per := (cfg.Sessions + cfg.Procs - 1) / cfg.Procs
	for from := 0; from < cfg.Sessions; from += per {
		cmd := exec.Command(cfg.Self, "idle-child")
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return ch, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return ch, err
		}
		if err := cmd.Start(); err != nil {
			return ch, fmt.Errorf("bench: start a child: %w", err)
		}
		ch.cmds, ch.stdins = append(ch.cmds, cmd), append(ch.stdins, in)
		spec := childSpec{Plan: *plan, From: from, To: min(from+per, cfg.Sessions), Parallel: max(1, cfg.ConnectParallel/cfg.Procs)}
		if err := json.NewEncoder(in).Encode(spec); err != nil {
			return ch, fmt.Errorf("bench: brief a child: %w", err)
		}
		go func() {
			var r childReady
			line, err := bufio.NewReader(out).ReadBytes('\n')
			if err == nil {
				err = json.Unmarshal(line, &r)
			}
			if err != nil {
				r = childReady{Failed: spec.To - spec.From, FirstErr: fmt.Sprintf("child: %v", err)}
			}
			ready <- r
		}()
	}
	for range ch.cmds {
		select {
		case r := <-ready:
			ch.connected += r.Connected
			ch.failed += r.Failed
			if ch.firstErr == "" {
				ch.firstErr = r.FirstErr
			}
		case <-ctx.Done():
			return ch, ctx.Err()
		}
	}
	return ch, nil
}

// stop closes the children's stdin, which ends them, and waits.
func (c *children) stop() {
	for _, in := range c.stdins {
		_ = in.Close()
	}
	for _, cmd := range c.cmds {
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// ServeIdleChild is a child process of an idle run: it reads its
// childSpec from in, connects those sessions, writes a childReady line to
// out and holds the sessions until in is closed.
func ServeIdleChild(ctx context.Context, in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	var spec childSpec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("bench: read the child's brief: %w", err)
	}
	if spec.To <= spec.From || len(spec.Plan.Edges) == 0 {
		return errors.New("bench: an empty brief")
	}
	w := &window{}
	n := spec.To - spec.From
	sessions := make([]fanoutSession, 0, n)
	// Dial sessions From..To-1 so each keeps its edge and token.
	shifted := spec.Plan
	shifted.Edges = rotate(spec.Plan.Edges, spec.From)
	shifted.Tokens = rotate(spec.Plan.Tokens, spec.From)
	got, _, failed, firstErr := connectAll(ctx, &shifted, n, spec.Parallel, w)
	for _, s := range got {
		if s != nil {
			sessions = append(sessions, s)
		}
	}
	defer closeAll(sessions)
	b, _ := json.Marshal(childReady{Connected: n - failed, Failed: failed, FirstErr: firstErr})
	if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
		return err
	}
	// Hold until the parent closes stdin (or dies).
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, dec.Buffered()); _, _ = io.Copy(io.Discard, in); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// rotate is s shifted left by k, so that index 0 of the result is s[k %
// len(s)]: session i of a child is session From+i of the plan.
func rotate(s []string, k int) []string {
	if len(s) == 0 {
		return s
	}
	k %= len(s)
	return append(append([]string(nil), s[k:]...), s[:k]...)
}
