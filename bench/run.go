package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wagglechat/waggle/client"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// Progress is one second of a run, for a live progress line.
type Progress struct {
	Elapsed   time.Duration
	Phase     string // warmup, measure or drain
	Streams   int64  // edge streams open now
	Sent      int64  // sends started in the second
	Acked     int64  // sends acked in the second
	Delivered int64  // bench messages delivered in the second
	Errors    int64  // sends failed in the second
	InFlight  int64  // sends awaiting their ack now
	Latency   Summary
	ServerRSS int64 // bytes, summed over Config.PIDs
}

// session is one SDK client: a device of a user.
type session struct {
	client *client.Client
	done   chan struct{}
}

// slot is a sender: a session and one of its user's conversations.
type slot struct {
	session int
	conv    int
}

// runner is the state of one run.
type runner struct {
	cfg      Config
	convIDs  []string
	expect   []int64 // deliveries each send to a conversation should cause
	sessions []*session
	open     atomic.Int64 // edge streams open

	// The measured window, in Unix ns: a message counts if sent within it.
	measureFrom, measureTo atomic.Int64

	inFlight  atomic.Int64
	acked     atomic.Int64 // measured
	expected  atomic.Int64 // measured: deliveries the acked sends should cause
	delivered atomic.Int64 // measured
	latency   Histogram    // measured: send to delivery
	ackTime   Histogram    // measured: send to ack

	// Per-second counters for Progress, reset as read.
	secSent, secAcked, secDelivered, secErrors atomic.Int64
	secLatency                                 Histogram

	errMu  sync.Mutex
	errors map[string]int64 // measured, by code
}

// Run performs one run: set-up, warmup, measurement and drain.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	convs, err := plan(cfg.Shape, cfg.Users, cfg.GroupSize)
	if err != nil {
		return nil, err
	}
	res := &Result{Start: time.Now().UTC(), Shape: cfg.Shape, Users: cfg.Users, ConnsPerUser: cfg.ConnsPerUser,
		StreamsPerConn: cfg.StreamsPerConn, GroupSize: cfg.GroupSize, Conversations: len(convs), Rate: cfg.Rate,
		Duration: cfg.Duration, Warmup: cfg.Warmup, Protocol: cfg.Protocol, Edges: cfg.Edges, PayloadBytes: cfg.PayloadBytes,
		Errors: map[string]int64{}}
	log := cfg.Logger
	api := h2cClient()
	defer api.CloseIdleConnections()

	t := time.Now()
	users, err := setupUsers(ctx, cfg.API, api, cfg.State, cfg.Users, cfg.RegisterParallel)
	if err != nil {
		return nil, err
	}
	res.RegisterTime = time.Since(t)
	log.Info("bench: users registered", "users", cfg.Users, "in", res.RegisterTime)

	t = time.Now()
	r := &runner{cfg: cfg, errors: res.Errors}
	if r.convIDs, err = createConversations(ctx, cfg.API, api, users, convs, cfg.Shape, cfg.RegisterParallel*4); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.ConversationTime = time.Since(t)
	r.expect = make([]int64, len(convs))
	for i, members := range convs {
		r.expect[i] = int64(len(members)*cfg.ConnsPerUser) - 1
	}
	log.Info("bench: conversations created", "conversations", len(convs), "in", res.ConversationTime)

	procs := newProcWatch(cfg.PIDs, cfg.Logger)
	procs.markBefore()
	// The sessions live until the run ends, whatever ctx does meanwhile.
	sessCtx, stopSessions := context.WithCancel(context.WithoutCancel(ctx))
	closeTransports, err := r.startSessions(sessCtx, users)
	defer func() {
		stopSessions()
		for _, s := range r.sessions {
			<-s.done
		}
		closeTransports()
	}()
	if err != nil {
		return nil, err
	}
	t = time.Now()
	res.Sessions = len(r.sessions)
	res.Connected = r.waitConnected(ctx)
	res.ConnectTime = time.Since(t)
	res.TCPConns = (len(r.sessions) + cfg.StreamsPerConn - 1) / cfg.StreamsPerConn
	log.Info("bench: sessions connected", "connected", res.Connected, "of", res.Sessions, "in", res.ConnectTime)
	if res.Connected == 0 {
		return nil, fmt.Errorf("bench: no session could connect to %v", cfg.Edges)
	}

	r.send(ctx, res, r.slots(convs), procs)

	for _, s := range r.sessions {
		st := s.client.Stats()
		res.Reconnects += max(st.Sessions-1, 0)
		res.Gaps += st.Gaps
		res.Syncs += st.Syncs
		res.Duplicates += st.Duplicates
		res.Resends += st.Resends
	}
	res.Acked, res.Expected, res.Delivered = r.acked.Load(), r.expected.Load(), r.delivered.Load()
	secs := cfg.Duration.Seconds()
	res.AckedPerSec, res.DeliveredPerSec = float64(res.Acked)/secs, float64(res.Delivered)/secs
	res.Latency, res.AckLatency = r.latency.Summary(false), r.ackTime.Summary(false)
	return res, nil
}

// startSessions creates every user's sessions, spread over TCP
// connections (StreamsPerConn sessions each) and the connections over the
// edges round robin, and runs them. It returns what closes the
// connections.
func (r *runner) startSessions(ctx context.Context, users []account) (func(), error) {
	cfg := r.cfg
	n := cfg.Users * cfg.ConnsPerUser
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	var dialer client.Dialer
	sessions := make([]*session, 0, n)
	for i := range n {
		if i%cfg.StreamsPerConn == 0 {
			edge := cfg.Edges[(i/cfg.StreamsPerConn)%len(cfg.Edges)]
			d, closer, err := newDialer(cfg.Protocol, edge)
			if err != nil {
				return closeAll, err
			}
			dialer, closers = countingDialer{Dialer: d, open: &r.open}, append(closers, closer)
		}
		user := users[i/cfg.ConnsPerUser]
		c, err := client.New(client.Config{
			Dialers:    []client.Dialer{dialer},
			Token:      func(context.Context) (string, error) { return user.token, nil },
			OnEvent:    r.onEvent(i),
			ClientName: "waggle-bench",
			Logger:     cfg.Logger,
		})
		if err != nil {
			return closeAll, fmt.Errorf("bench: %w", err)
		}
		sessions = append(sessions, &session{client: c, done: make(chan struct{})})
	}
	r.sessions = sessions
	// Start them ConnectParallel at a time, so the edge sees a ramp rather
	// than a stampede.
	go func() {
		sem := make(chan struct{}, r.cfg.ConnectParallel)
		for _, s := range r.sessions {
			sem <- struct{}{}
			go func() {
				defer close(s.done)
				go func() {
					wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_ = s.client.WaitConnected(wctx)
					cancel()
					<-sem
				}()
				if err := s.client.Run(ctx); err != nil {
					r.cfg.Logger.Warn("bench: session given up", "err", err)
				}
			}()
		}
	}()
	return closeAll, nil
}

// newDialer opens one TCP connection's worth of transport to edge.
func newDialer(protocol, edge string) (client.Dialer, func(), error) {
	if protocol == ProtocolGRPC {
		conn, err := grpcConn(edge)
		if err != nil {
			return nil, nil, err
		}
		return client.GRPCDialer(conn), func() { _ = conn.Close() }, nil
	}
	hc := h2cClient()
	return client.ConnectDialer(hc, edge), hc.CloseIdleConnections, nil
}

// grpcConn is a grpc-go connection to edge (http://host:port).
func grpcConn(edge string) (*grpc.ClientConn, error) {
	u, err := url.Parse(edge)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bench: edge %q: want http://host:port", edge)
	}
	// Fixed flow-control windows turn off grpc-go's BDP estimation,
	// which otherwise pings the server after nearly every push it
	// receives: a ping and its answer per push on both sides.
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("bench: grpc client for %s: %w", edge, err)
	}
	return conn, nil
}

// waitConnected waits until every session is up or 30 s have passed, and
// returns how many are up.
func (r *runner) waitConnected(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var up atomic.Int64
	var wg sync.WaitGroup
	for _, s := range r.sessions {
		wg.Go(func() {
			if s.client.WaitConnected(ctx) == nil {
				up.Add(1)
			}
		})
	}
	wg.Wait()
	return int(up.Load())
}

// slots lists every (session, conversation) a send can come from, in a
// fixed shuffled order so consecutive sends hit different conversations.
func (r *runner) slots(convs [][]int) []slot {
	var out []slot
	for c, members := range convs {
		for _, u := range members {
			for j := range r.cfg.ConnsPerUser {
				out = append(out, slot{session: u*r.cfg.ConnsPerUser + j, conv: c})
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// onEvent measures the bench messages session i receives from others.
func (r *runner) onEvent(i int) func(*chatv1.Event) {
	return func(ev *chatv1.Event) {
		c := ev.GetMessage().GetContent().GetCustom()
		if c.GetType() != payloadType {
			return
		}
		sent, sender, ok := decodePayload(c.GetData())
		if !ok || sender == i {
			return // our own send's answer, applied as an event
		}
		lat := time.Duration(time.Now().UnixNano() - sent)
		r.secDelivered.Add(1)
		r.secLatency.Record(lat)
		if sent >= r.measureFrom.Load() && sent < r.measureTo.Load() {
			r.delivered.Add(1)
			r.latency.Record(lat)
		}
	}
}

// pacingTick is how often the sender checks which sends are due.
const pacingTick = 2 * time.Millisecond

// send paces sends at cfg.Rate for Warmup+Duration, reporting progress
// every second, then waits for the answers and the deliveries.
func (r *runner) send(ctx context.Context, res *Result, slots []slot, procs *procWatch) {
	cfg := r.cfg
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	start := time.Now()
	from, to := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	r.measureFrom.Store(from.UnixNano())
	r.measureTo.Store(to.UnixNano())
	var cpuFrom time.Duration
	measuring := cfg.Warmup == 0
	if measuring {
		procs.markStart()
		cpuFrom = selfCPU()
		res.HeldMin = r.open.Load()
	}

	pace := time.NewTicker(pacingTick)
	defer pace.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	var issued int64
	next := 0
	for now := start; now.Before(to); {
		select {
		case <-ctx.Done():
			to = now // interrupted: measure what was sent
			r.measureTo.Store(to.UnixNano())
			continue
		case now = <-second.C:
			r.progress(now.Sub(start), phase(now, from), procs)
			if now.After(from) {
				res.HeldMin = min(res.HeldMin, r.open.Load())
			}
		case now = <-pace.C:
		}
		if !measuring && !now.Before(from) {
			measuring = true
			procs.markStart()
			cpuFrom = selfCPU()
			res.HeldMin = r.open.Load()
		}
		upTo := now
		if upTo.After(to) {
			upTo = to
		}
		due := int64(upTo.Sub(start).Seconds() * cfg.Rate)
		for ; issued < due; issued++ {
			r.issue(sendCtx, slots[next], from, to)
			next = (next + 1) % len(slots)
		}
	}
	res.Issued = issued
	res.HeldAtEnd = r.open.Load()
	res.BenchCPU = selfCPU() - cpuFrom
	procs.markEnd(to.Sub(from))

	// Drain: the answers first, then what they should deliver.
	deadline := time.Now().Add(cfg.SendTimeout + cfg.Drain)
	drainUntil := time.Time{}
	for time.Now().Before(deadline) {
		if r.inFlight.Load() == 0 {
			if drainUntil.IsZero() {
				drainUntil = time.Now().Add(cfg.Drain)
			}
			if r.delivered.Load() >= r.expected.Load() || time.Now().After(drainUntil) {
				break
			}
		}
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case now := <-second.C:
			r.progress(now.Sub(start), "drain", procs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.Servers, res.Idle = procs.results(), procs.idle()
}

func phase(now, measureFrom time.Time) string {
	if now.Before(measureFrom) {
		return "warmup"
	}
	return "measure"
}

// issue starts one send from s unless too many are awaiting their ack.
func (r *runner) issue(ctx context.Context, s slot, from, to time.Time) {
	now := time.Now()
	measured := !now.Before(from) && now.Before(to)
	if r.inFlight.Load() >= int64(r.cfg.MaxInFlight) {
		r.secErrors.Add(1)
		if measured {
			r.countError("local: in-flight limit")
		}
		return
	}
	r.inFlight.Add(1)
	r.secSent.Add(1)
	content := &chatv1.MessageContent{Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{
		Type: payloadType, Data: encodePayload(now, s.session, r.cfg.PayloadBytes)}}}
	go func() {
		defer r.inFlight.Add(-1)
		sctx, cancel := context.WithTimeout(ctx, r.cfg.SendTimeout)
		_, err := r.sessions[s.session].client.Send(sctx, r.convIDs[s.conv], content)
		cancel()
		if err != nil {
			r.secErrors.Add(1)
			if measured {
				r.countError(errorCode(err))
			}
			return
		}
		r.secAcked.Add(1)
		if measured {
			r.acked.Add(1)
			r.expected.Add(r.expect[s.conv])
			r.ackTime.Record(time.Since(now))
		}
	}()
}

func (r *runner) countError(code string) {
	r.errMu.Lock()
	r.errors[code]++
	r.errMu.Unlock()
}

func (r *runner) progress(elapsed time.Duration, phase string, procs *procWatch) {
	if r.cfg.Progress == nil {
		procs.sample()
		return
	}
	r.cfg.Progress(Progress{
		Elapsed:   elapsed.Round(time.Second),
		Phase:     phase,
		Streams:   r.open.Load(),
		Sent:      r.secSent.Swap(0),
		Acked:     r.secAcked.Swap(0),
		Delivered: r.secDelivered.Swap(0),
		Errors:    r.secErrors.Swap(0),
		InFlight:  r.inFlight.Load(),
		Latency:   r.secLatency.Summary(true),
		ServerRSS: procs.sample(),
	})
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingDialer keeps count of the streams open through it.
type countingDialer struct {
	client.Dialer
	open *atomic.Int64
}

func (d countingDialer) Dial(ctx context.Context) (client.Stream, error) {
	s, err := d.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	d.open.Add(1)
	return &countedStream{Stream: s, open: d.open}, nil
}

type countedStream struct {
	client.Stream
	open *atomic.Int64
	once sync.Once
}

func (s *countedStream) Close() error {
	s.once.Do(func() { s.open.Add(-1) })
	return s.Stream.Close()
}
