package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
)

// Fanout targets: the systems a fanout run can measure.
const (
	TargetWaggle     = "waggle"     // a Waggle server: one group, unary sends
	TargetFloor      = "floor"      // bench/floor: the bare transport
	TargetCentrifugo = "centrifugo" // Centrifugo v6: one channel, HTTP API publishes
)

// floorConversation is the conversation id the bench uses with a floor
// server, which keeps none.
const floorConversation = "00000000-0000-4000-8000-00000000f100"

// FanoutConfig is one fanout run: one large group (or channel), one
// sender at a fixed rate, a minimal client per online member, each on a
// TCP connection of its own. Zero values take the defaults noted.
type FanoutConfig struct {
	Target   string   // TargetWaggle, TargetFloor or TargetCentrifugo. Required.
	Protocol string   // waggle and floor: ProtocolConnect (default) or ProtocolGRPC
	Edges    []string // where sessions connect, round robin. Required.
	// API is where the sender sends (and, for Waggle, where the set-up
	// runs). Default Edges[0].
	API string
	// Members in the group (Waggle); for the others, sessions. Default 1000.
	Members int
	// Online members: those holding a session, the sender (member 0)
	// included. Default Members.
	Online   int
	Rate     float64       // messages a second. Required.
	Duration time.Duration // measured sending. Default 10 s.
	Warmup   time.Duration // sending before measuring. Default 0.
	Drain    time.Duration // waiting for deliveries after the last send. Default 2 s.
	// IdleSample is how long the machine's idle share is measured before
	// sending. Default 2 s; negative skips it.
	IdleSample   time.Duration
	PayloadBytes int           // default 200
	MaxInFlight  int           // sends awaiting their answer; beyond, a due send is skipped. Default 1000.
	SendTimeout  time.Duration // default 10 s
	// ConnectParallel is how many sessions open at once. Default 100.
	ConnectParallel int
	// RegisterParallel is how many registrations run at once. Default 4.
	RegisterParallel int
	// State is the file that keeps the Waggle set-up between runs ("":
	// none, every run registers anew).
	State string
	// SetupOnly stops after the set-up (Waggle: registration or token
	// refresh).
	SetupOnly  bool
	Centrifugo CentrifugoAuth // default CentrifugoDefaults
	// PIDs are the server processes under test.
	PIDs     []int
	Progress func(Progress)
	Logger   *slog.Logger
}

func (c *FanoutConfig) setDefaults() error {
	switch c.Target {
	case TargetWaggle, TargetFloor, TargetCentrifugo:
	default:
		return configErrorf("target %q: want waggle, floor or centrifugo", c.Target)
	}
	if err := transportDefaults(c.Edges, &c.API, &c.Protocol); err != nil {
		return err
	}
	if c.Members == 0 {
		c.Members = 1000
	}
	if c.Online == 0 {
		c.Online = c.Members
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 2 * time.Second
	}
	if c.IdleSample == 0 {
		c.IdleSample = 2 * time.Second
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 200
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1000
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 10 * time.Second
	}
	if c.ConnectParallel == 0 {
		c.ConnectParallel = 100
	}
	if c.RegisterParallel == 0 {
		c.RegisterParallel = 4
	}
	if c.Centrifugo == (CentrifugoAuth{}) {
		c.Centrifugo = CentrifugoDefaults
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Members < 2 || c.Members > maxGroupSize:
		return configErrorf("members: want 2 to %d, got %d", maxGroupSize, c.Members)
	case c.Online < 1 || c.Online > c.Members:
		return configErrorf("online: want 1 to %d (the members), got %d", c.Members, c.Online)
	case !c.SetupOnly && c.Rate <= 0:
		return configErrorf("the send rate must be positive")
	case c.Duration < 0 || c.Warmup < 0 || c.Drain < 0:
		return configErrorf("duration, warmup and drain must not be negative")
	case c.PayloadBytes < payloadHeader:
		return configErrorf("the payload must be at least %d bytes", payloadHeader)
	case c.SetupOnly && c.Target != TargetWaggle:
		return configErrorf("only the waggle target has a set-up")
	}
	return nil
}

// maxGroupSize is Waggle's largest group.
const maxGroupSize = 10_000

// FanoutResult is what a fanout run measured. Sends and deliveries count
// messages sent in the measured window; deliveries are first receipts by
// the drain's end.
type FanoutResult struct {
	Start        time.Time     `json:"start"`
	Target       string        `json:"target"`
	Protocol     string        `json:"protocol,omitempty"`
	Edges        []string      `json:"edges"`
	API          string        `json:"api"`
	Members      int           `json:"members"`
	Online       int           `json:"online"`
	Rate         float64       `json:"rate"`
	Duration     time.Duration `json:"duration_ns"`
	Warmup       time.Duration `json:"warmup_ns"`
	Drain        time.Duration `json:"drain_ns"`
	PayloadBytes int           `json:"payload_bytes"`

	SetupTime   time.Duration `json:"setup_time_ns"`
	ConnectTime time.Duration `json:"connect_time_ns"`
	Connected   int           `json:"connected"`
	// ConnectFailed counts sessions that could not connect; ConnectError
	// is the first one's error.
	ConnectFailed int    `json:"connect_failed"`
	ConnectError  string `json:"connect_error,omitempty"`
	// Lost counts sessions whose stream ended during the run, by why.
	Lost map[string]int `json:"lost"`

	// IdleBefore is the machine's idle share just before sending (-1: not
	// measured).
	IdleBefore float64 `json:"idle_percent_before"`

	Issued     int64            `json:"issued"` // sends started, warmup included
	SendsDone  int64            `json:"sends_done"`
	SendsLate  int64            `json:"sends_late"` // answered after the drain's end
	SendErrors map[string]int64 `json:"send_errors"`

	Expected   int64   `json:"expected_deliveries"` // sends done × sessions connected
	Delivered  int64   `json:"delivered"`
	Percent    float64 `json:"delivered_percent"`
	Duplicates int64   `json:"duplicates"`
	Gaps       int64   `json:"gaps"`
	Latency    Summary `json:"latency"` // send to receipt

	// CPU over the window from the measured send start to the drain's end.
	Window      time.Duration `json:"cpu_window_ns"`
	ServerCPU   time.Duration `json:"server_cpu_ns"` // the PIDs together
	RedisCPU    time.Duration `json:"redis_cpu_ns"`  // every redis-server process
	PostgresCPU time.Duration `json:"postgres_cpu_ns"`
	BenchCPU    time.Duration `json:"bench_cpu_ns"`
	// Deliveries per CPU-second: of the server alone, and of the server
	// with Redis and Postgres.
	PerServerCPU float64       `json:"deliveries_per_server_cpu_s"`
	PerTotalCPU  float64       `json:"deliveries_per_total_cpu_s"`
	Servers      []ServerStats `json:"servers"`
}

// sender sends message i of a run, sent at sent.
type sender interface {
	send(ctx context.Context, i int64, sent time.Time) error
	close()
}

// fanoutSession is one minimal client.
type fanoutSession interface {
	lost() string
	close()
}

// dialPlan is what it takes to open members' sessions, as data, so a
// child process can open some of them.
type dialPlan struct {
	Target       string         `json:"target"`
	Protocol     string         `json:"protocol"`
	Edges        []string       `json:"edges"`
	Tokens       []string       `json:"tokens,omitempty"` // Waggle: session i uses Tokens[i % len]
	Conversation string         `json:"conversation,omitempty"`
	Centrifugo   CentrifugoAuth `json:"centrifugo"`
}

// dial opens session i on edge i % len(Edges), on a TCP connection of its
// own, and returns once it can receive.
func (p *dialPlan) dial(ctx context.Context, i int, t *tally, w *window) (fanoutSession, error) {
	edge := p.Edges[i%len(p.Edges)]
	if p.Target == TargetCentrifugo {
		tok, err := centrifugoToken(p.Centrifugo.Secret, i)
		if err != nil {
			return nil, err
		}
		return dialCentrifugo(ctx, edge, tok, p.Centrifugo.Channel, t, w)
	}
	var tok string
	if len(p.Tokens) > 0 {
		tok = p.Tokens[i%len(p.Tokens)]
	}
	return dialEdge(ctx, p.Protocol, edge, tok, p.Conversation, t, w)
}

// unarySender sends with MessageService.SendMessage, as a browser or a
// service does: no session id, so Waggle pushes to the sender's own
// session too.
type unarySender struct {
	hc   *http.Client
	svc  chatv1connect.MessageServiceClient
	conv string
	size int
	run  string // client_msg_id prefix
}

func newUnarySender(api, conv string, size int, opts ...connect.ClientOption) *unarySender {
	hc := h2cClient()
	return &unarySender{hc: hc, svc: chatv1connect.NewMessageServiceClient(hc, api, opts...), conv: conv, size: size, run: "fanout-" + runID()}
}

func (s *unarySender) send(ctx context.Context, i int64, sent time.Time) error {
	_, err := s.svc.SendMessage(ctx, &chatv1.SendMessageRequest{ConversationId: s.conv, ClientMsgId: s.run + "-" + strconv.FormatInt(i, 10),
		Content: &chatv1.MessageContent{Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{
			Type: payloadType, Data: encodePayload(sent, int(i), s.size)}}}})
	return err
}

func (s *unarySender) close() { s.hc.CloseIdleConnections() }

// preparePlan sets up the target's sessions: for Waggle the group (from
// the state, or registered) and fresh access tokens for the online members.
func preparePlan(ctx context.Context, cfg *FanoutConfig) (*dialPlan, error) {
	plan := &dialPlan{Target: cfg.Target, Protocol: cfg.Protocol, Edges: cfg.Edges, Centrifugo: cfg.Centrifugo}
	switch cfg.Target {
	case TargetFloor:
		plan.Conversation = floorConversation
	case TargetWaggle:
		hc := h2cClient()
		defer hc.CloseIdleConnections()
		st, tokens, err := setupGroup(ctx, cfg.Logger, cfg.API, hc, cfg.State, cfg.Members, cfg.Online, cfg.RegisterParallel)
		if err != nil {
			return nil, err
		}
		plan.Tokens, plan.Conversation = tokens, st.Conversation
	}
	return plan, nil
}

// newSender is the run's one sender: Waggle's member 0, or the floor's or
// Centrifugo's API.
func newSender(cfg *FanoutConfig, plan *dialPlan) sender {
	switch cfg.Target {
	case TargetCentrifugo:
		return newCentrifugoPublisher(cfg.API, cfg.Centrifugo, cfg.PayloadBytes)
	case TargetFloor:
		if cfg.Protocol == ProtocolGRPC {
			// The grpc floor serves grpc-go only.
			return newUnarySender(cfg.API, plan.Conversation, cfg.PayloadBytes, connect.WithGRPC())
		}
		return newUnarySender(cfg.API, plan.Conversation, cfg.PayloadBytes)
	}
	return newUnarySender(cfg.API, plan.Conversation, cfg.PayloadBytes, bearer(plan.Tokens[0]))
}

// connectAll opens n sessions, parallel at a time, each within 30 s. A
// session that fails is left nil.
func connectAll(ctx context.Context, plan *dialPlan, n, parallel int, w *window) ([]fanoutSession, []*tally, int, string) {
	sessions := make([]fanoutSession, n)
	tallies := make([]*tally, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			failed.Add(int64(n - i))
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			t := &tally{}
			s, err := plan.dial(dctx, i, t, w)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			sessions[i], tallies[i] = s, t
		})
	}
	wg.Wait()
	msg, _ := firstErr.Load().(string)
	return sessions, tallies, int(failed.Load()), msg
}

func closeAll(sessions []fanoutSession) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, s := range sessions {
		if s == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.close()
		})
	}
	wg.Wait()
}

// RunFanout performs one fanout run: set-up, sessions, the idle sample,
// sending (warmup, then the measured window), the drain, the report.
func RunFanout(ctx context.Context, cfg FanoutConfig) (*FanoutResult, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	res := &FanoutResult{Start: time.Now().UTC(), Target: cfg.Target, Edges: cfg.Edges, API: cfg.API, Members: cfg.Members,
		Online: cfg.Online, Rate: cfg.Rate, Duration: cfg.Duration, Warmup: cfg.Warmup, Drain: cfg.Drain,
		PayloadBytes: cfg.PayloadBytes, Lost: map[string]int{}, SendErrors: map[string]int64{}}
	if cfg.Target != TargetCentrifugo {
		res.Protocol = cfg.Protocol
	}
	t := time.Now()
	plan, err := preparePlan(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	res.SetupTime = time.Since(t)
	if cfg.SetupOnly {
		return res, nil
	}
	snd := newSender(&cfg, plan)
	defer snd.close()
	log.Info("bench: set up", "target", cfg.Target, "in", res.SetupTime)

	procs := newProcWatch(cfg.PIDs, log)
	procs.markBefore()
	w := &window{}
	t = time.Now()
	sessions, tallies, failed, firstErr := connectAll(ctx, plan, cfg.Online, cfg.ConnectParallel, w)
	defer closeAll(sessions)
	res.ConnectTime, res.ConnectFailed, res.ConnectError = time.Since(t), failed, firstErr
	res.Connected = cfg.Online - failed
	log.Info("bench: sessions up", "connected", res.Connected, "failed", failed, "in", res.ConnectTime)
	if res.Connected == 0 {
		return nil, fmt.Errorf("bench: no session could connect to %v: %s", cfg.Edges, firstErr)
	}
	res.IdleBefore = -1
	if cfg.IdleSample > 0 {
		if idle, err := idlePercent(ctx, cfg.IdleSample); err != nil {
			log.Warn("bench: cannot measure the machine's idle share", "err", err)
		} else {
			res.IdleBefore = idle
		}
	}

	r := &fanoutRunner{cfg: cfg, snd: snd, win: w, res: res, sessions: sessions, tallies: tallies, procs: procs}
	r.run(ctx)

	for _, s := range sessions {
		if s != nil {
			if why := s.lost(); why != "" {
				res.Lost[why]++
			}
		}
	}
	var lat Histogram
	for _, t := range tallies {
		if t == nil {
			continue
		}
		t.mu.Lock()
		res.Delivered += t.delivered
		res.Duplicates += t.keys.dups
		res.Gaps += t.keys.gaps()
		lat.Merge(&t.latency)
		t.mu.Unlock()
	}
	res.Latency = lat.Summary(false)
	res.Expected = res.SendsDone * int64(res.Connected)
	if res.Expected > 0 {
		res.Percent = 100 * float64(res.Delivered) / float64(res.Expected)
	}
	if s := res.ServerCPU.Seconds(); s > 0 {
		res.PerServerCPU = float64(res.Delivered) / s
	}
	if s := (res.ServerCPU + res.RedisCPU + res.PostgresCPU).Seconds(); s > 0 {
		res.PerTotalCPU = float64(res.Delivered) / s
	}
	return res, nil
}

// fanoutRunner is the sending part of a run.
type fanoutRunner struct {
	cfg      FanoutConfig
	snd      sender
	win      *window
	res      *FanoutResult
	sessions []fanoutSession
	tallies  []*tally
	procs    *procWatch

	inFlight atomic.Int64
	done     atomic.Int64
	late     atomic.Int64
	errMu    sync.Mutex
	warnOnce sync.Once

	// Per-second counters for Progress.
	secSent, secDone, secErrors atomic.Int64
	lastDelivered               int64
}

func (r *fanoutRunner) run(ctx context.Context) {
	cfg := r.cfg
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	start := time.Now()
	from := start.Add(cfg.Warmup)
	to := from.Add(cfg.Duration)
	drainEnd := to.Add(cfg.Drain)
	// Message i is due at start + i/Rate: the first at once.
	fromIdx, toIdx := dueBefore(cfg.Warmup, cfg.Rate), dueBefore(cfg.Warmup+cfg.Duration, cfg.Rate)
	r.win.from.Store(fromIdx)
	r.win.to.Store(toIdx)
	r.win.until.Store(drainEnd.UnixNano())

	var cpuFrom time.Duration
	var redisFrom, pgFrom map[int]time.Duration
	measuring := false
	mark := func() {
		measuring = true
		r.procs.markStart()
		redisFrom, pgFrom, cpuFrom = commCPU("redis-server"), commCPU("postgres"), selfCPU()
	}
	if cfg.Warmup == 0 {
		mark()
	}
	pace := time.NewTicker(pacingTick)
	defer pace.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	var issued int64
	for now := start; now.Before(drainEnd); {
		select {
		case <-ctx.Done():
			// Interrupted: stop here and report what was measured.
			toIdx = min(toIdx, max(issued, fromIdx))
			r.win.to.Store(toIdx)
			drainEnd = now
			continue
		case now = <-second.C:
			r.progress(now.Sub(start), phaseAt(now, from, to))
		case now = <-pace.C:
		}
		if !measuring && !now.Before(from) {
			mark()
		}
		due := min(int64(now.Sub(start).Seconds()*cfg.Rate)+1, toIdx)
		for ; issued < due; issued++ {
			r.issue(sendCtx, issued, issued >= fromIdx && issued < toIdx, drainEnd)
		}
	}
	if !measuring { // interrupted during the warmup: an empty window
		from = time.Now()
		mark()
	}
	r.res.Issued = issued
	r.res.Window = time.Since(from)
	r.procs.markEnd(r.res.Window)
	r.res.RedisCPU = cpuDelta(redisFrom, commCPU("redis-server"))
	r.res.PostgresCPU = cpuDelta(pgFrom, commCPU("postgres"))
	r.res.BenchCPU = selfCPU() - cpuFrom
	r.res.Servers = r.procs.results()
	for _, s := range r.res.Servers {
		r.res.ServerCPU += s.CPU
	}
	// The answers still missing only settle the send counts.
	for deadline := time.Now().Add(cfg.SendTimeout); r.inFlight.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	r.res.SendsDone, r.res.SendsLate = r.done.Load(), r.late.Load()
}

// dueBefore is how many messages are due before d at rate: those with
// i/rate < d.
func dueBefore(d time.Duration, rate float64) int64 {
	return int64(math.Ceil(d.Seconds()*rate - 1e-9))
}

func phaseAt(now, from, to time.Time) string {
	switch {
	case now.Before(from):
		return "warmup"
	case now.Before(to):
		return "measure"
	}
	return "drain"
}

// issue starts send i on its own goroutine unless MaxInFlight are
// awaiting their answer; measured says whether it is due in the window.
func (r *fanoutRunner) issue(ctx context.Context, i int64, measured bool, drainEnd time.Time) {
	now := time.Now()
	if r.inFlight.Load() >= int64(r.cfg.MaxInFlight) {
		r.secErrors.Add(1)
		if measured {
			r.countError("local: in-flight limit")
		}
		return
	}
	r.inFlight.Add(1)
	r.secSent.Add(1)
	go func() {
		defer r.inFlight.Add(-1)
		sctx, cancel := context.WithTimeout(ctx, r.cfg.SendTimeout)
		err := r.snd.send(sctx, i, now)
		cancel()
		if err != nil {
			r.secErrors.Add(1)
			if measured {
				r.countError(errorCode(err))
			}
			r.warnOnce.Do(func() { r.cfg.Logger.Warn("bench: a send failed (only the first is logged)", "err", err) })
			return
		}
		r.secDone.Add(1)
		switch {
		case !measured:
		case time.Now().After(drainEnd):
			r.late.Add(1)
		default:
			r.done.Add(1)
		}
	}()
}

func (r *fanoutRunner) countError(code string) {
	r.errMu.Lock()
	r.res.SendErrors[code]++
	r.errMu.Unlock()
}

func (r *fanoutRunner) progress(elapsed time.Duration, phase string) {
	rss := r.procs.sample()
	if r.cfg.Progress == nil {
		return
	}
	var delivered, up int64
	for i, t := range r.tallies {
		if t == nil {
			continue
		}
		t.mu.Lock()
		delivered += t.delivered
		t.mu.Unlock()
		if r.sessions[i].lost() == "" {
			up++
		}
	}
	r.cfg.Progress(Progress{Elapsed: elapsed.Round(time.Second), Phase: phase, Streams: up, Sent: r.secSent.Swap(0),
		Acked: r.secDone.Swap(0), Delivered: delivered - r.lastDelivered, Errors: r.secErrors.Swap(0),
		InFlight: r.inFlight.Load(), ServerRSS: rss})
	r.lastDelivered = delivered
}
