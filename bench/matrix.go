package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// MatrixTargets are the servers a matrix compares, in the order each rate
// runs them.
var MatrixTargets = []string{"waggle-grpc", "waggle-connect", "floor-grpc", "floor-connect", "centrifugo"}

// MatrixConfig is a whole comparison: every target at every rate, Reps
// times over, interleaved (rate-major, the targets taking turns), each
// run a child process `Self fanout ...` bounded in time.
type MatrixConfig struct {
	Self       string // the waggle-bench executable. Required.
	Waggle     string // a waggle binary; "" builds ./cmd/waggle (run from the repository)
	Centrifugo string // the centrifugo binary. Required if the targets hold centrifugo.
	Targets    []string
	Rates      []float64
	Reps       int
	Members    int
	Duration   time.Duration
	Warmup     time.Duration
	Drain      time.Duration
	// BasePort is the first of five consecutive ports on 127.0.0.1: waggle
	// (and +1 its grpc-go listener), the grpc and connect floors,
	// Centrifugo.
	BasePort int
	// PostgresHost is where createdb and dropdb make and drop the run's
	// database (user postgres). RedisURL is the Redis waggle uses.
	PostgresHost string
	RedisURL     string
	// Cooldown is the most to wait before each run for the previous
	// target to go quiet (under 10 % of a core).
	Cooldown time.Duration
	// RawOut, if set, receives every run's result as JSON lines.
	RawOut io.Writer
	Logger *slog.Logger
}

// MatrixRun is one run of a matrix.
type MatrixRun struct {
	Target string        `json:"target"`
	Rate   float64       `json:"rate"`
	Rep    int           `json:"rep"`
	Result *FanoutResult `json:"result,omitempty"`
	Err    string        `json:"error,omitempty"`
}

func (c *MatrixConfig) setDefaults() error {
	if c.Self == "" {
		return configErrorf("the matrix needs the waggle-bench executable")
	}
	if len(c.Targets) == 0 {
		c.Targets = MatrixTargets
	}
	for _, t := range c.Targets {
		if !slices.Contains(MatrixTargets, t) {
			return configErrorf("target %q: want some of %s", t, strings.Join(MatrixTargets, ","))
		}
	}
	if slices.Contains(c.Targets, "centrifugo") && c.Centrifugo == "" {
		return configErrorf("the centrifugo target needs the centrifugo binary")
	}
	if len(c.Rates) == 0 {
		c.Rates = []float64{10, 100, 200, 400, 600}
	}
	if c.Reps == 0 {
		c.Reps = 3
	}
	if c.Members == 0 {
		c.Members = 1000
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 2 * time.Second
	}
	if c.BasePort == 0 {
		c.BasePort = 18600
	}
	if c.PostgresHost == "" {
		c.PostgresHost = "127.0.0.1"
	}
	if c.RedisURL == "" {
		c.RedisURL = "redis://127.0.0.1:6379/0"
	}
	if c.Cooldown == 0 {
		c.Cooldown = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// matrixServer is one server process the matrix started.
type matrixServer struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *matrixServer) pid() int { return s.cmd.Process.Pid }

func (s *matrixServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// RunMatrix starts the servers, runs the matrix and cleans up (servers,
// database, Redis keys, files). WriteMatrixTable summarises its runs.
func RunMatrix(ctx context.Context, cfg *MatrixConfig) ([]MatrixRun, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	tmp, err := os.MkdirTemp("", "waggle-matrix-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var servers []*matrixServer
	defer func() {
		for _, s := range slices.Backward(servers) {
			s.stop()
		}
	}()
	start := func(name string, logFile string, bin string, args ...string) (*matrixServer, error) {
		f, err := os.Create(filepath.Join(tmp, logFile))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("bench: start %s: %w", name, err)
		}
		s := &matrixServer{name: name, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); f.Close(); close(s.done) }()
		servers = append(servers, s)
		return s, nil
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", cfg.BasePort+i) }
	url := func(i int) string { return "http://" + addr(i) }

	waggleBin := cfg.Waggle
	needWaggle := slices.ContainsFunc(cfg.Targets, func(t string) bool { return strings.HasPrefix(t, "waggle") })
	if needWaggle && waggleBin == "" {
		waggleBin = filepath.Join(tmp, "waggle")
		build := exec.CommandContext(ctx, "go", "build", "-o", waggleBin, "./cmd/waggle")
		if b, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bench: build waggle: %w: %s", err, b)
		}
	}
	pids := map[string]int{}
	pidOf := func(target string) int {
		if strings.HasPrefix(target, "waggle") {
			return pids["waggle"]
		}
		return pids[target]
	}
	if needWaggle {
		db := "wbench_fanout_" + randomHex(4)
		if b, err := exec.CommandContext(ctx, "createdb", "-h", cfg.PostgresHost, "-U", "postgres", db).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bench: createdb %s: %w: %s", db, err, b)
		}
		defer func() {
			if b, err := exec.Command("dropdb", "-h", cfg.PostgresHost, "-U", "postgres", "--force", db).CombinedOutput(); err != nil {
				log.Warn("bench: dropdb", "db", db, "err", err, "out", string(b))
			}
		}()
		prefix := "wbfan-" + randomHex(4) + ":"
		defer deleteRedisPrefix(cfg.RedisURL, prefix, log)
		seed := make([]byte, 32)
		_, _ = rand.Read(seed)
		s, err := start("waggle", "waggle.log", waggleBin, "serve", "--addr", addr(0), "--edge-grpc-addr", addr(1),
			"--postgres", fmt.Sprintf("postgres://postgres@%s:5432/%s?sslmode=disable", cfg.PostgresHost, db),
			"--redis", cfg.RedisURL, "--redis-prefix", prefix, "--send-rate", "100000", "--send-burst", "100000", "--log-level", "warn",
			// Thousands of members register from this one address.
			"--register-limit", "-1", "--login-limit", "-1", "--login-address-limit", "-1", "--refresh-limit", "-1",
			"--token-key", base64.StdEncoding.EncodeToString(seed), "--internal-secret", "waggle-bench-matrix-"+randomHex(8))
		if err != nil {
			return nil, err
		}
		if err := waitHealthy(ctx, addr(0), s.done); err != nil {
			return nil, fmt.Errorf("bench: waggle serve: %w (see its log)", err)
		}
		pids["waggle"] = s.pid()
	}
	for i, tr := range []string{"grpc", "connect"} {
		if !slices.Contains(cfg.Targets, "floor-"+tr) {
			continue
		}
		s, err := start("floor-"+tr, "floor-"+tr+".log", cfg.Self, "floor-server", "--transport", tr, "--addr", addr(2+i))
		if err != nil {
			return nil, err
		}
		if err := waitListening(ctx, addr(2+i), s.done); err != nil {
			return nil, fmt.Errorf("bench: floor-server %s: %w", tr, err)
		}
		pids["floor-"+tr] = s.pid()
	}
	if slices.Contains(cfg.Targets, "centrifugo") {
		conf, err := CentrifugoConfig(addr(4), CentrifugoDefaults)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(tmp, "centrifugo.json")
		if err := os.WriteFile(path, conf, 0o600); err != nil {
			return nil, err
		}
		s, err := start("centrifugo", "centrifugo.log", cfg.Centrifugo, "--config", path)
		if err != nil {
			return nil, err
		}
		if err := waitListening(ctx, addr(4), s.done); err != nil {
			return nil, fmt.Errorf("bench: centrifugo: %w", err)
		}
		pids["centrifugo"] = s.pid()
	}

	common := []string{"--members", strconv.Itoa(cfg.Members), "--duration", cfg.Duration.String(), "--drain", cfg.Drain.String(),
		"--warmup", cfg.Warmup.String(), "--json", "--quiet"}
	state := filepath.Join(tmp, "state.json")
	argsFor := func(target string, rate float64) []string {
		var a []string
		switch target {
		case "waggle-grpc":
			a = []string{"--target", "waggle", "--protocol", "grpc", "--edges", url(1), "--api", url(0), "--state", state}
		case "waggle-connect":
			a = []string{"--target", "waggle", "--protocol", "connect", "--edges", url(0), "--api", url(0), "--state", state}
		case "floor-grpc":
			a = []string{"--target", "floor", "--protocol", "grpc", "--edges", url(2), "--api", url(2)}
		case "floor-connect":
			a = []string{"--target", "floor", "--protocol", "connect", "--edges", url(3), "--api", url(3)}
		case "centrifugo":
			a = []string{"--target", "centrifugo", "--edges", url(4), "--api", url(4)}
		}
		a = append(a, "--pids", strconv.Itoa(pidOf(target)), "--rate", strconv.FormatFloat(rate, 'f', -1, 64))
		return append(append([]string{"fanout"}, a...), common...)
	}
	if needWaggle {
		log.Info("bench: matrix set-up: registering the group", "members", cfg.Members)
		setup := exec.CommandContext(ctx, cfg.Self, "fanout", "--target", "waggle", "--setup-only", "--members", strconv.Itoa(cfg.Members),
			"--api", url(0), "--edges", url(0), "--state", state, "--quiet")
		if b, err := setup.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bench: matrix set-up: %w: %s", err, b)
		}
	}

	var runs []MatrixRun
	limit := cfg.Warmup + cfg.Duration + cfg.Drain + 3*time.Minute
	for rep := 1; rep <= cfg.Reps; rep++ {
		for _, rate := range cfg.Rates {
			for _, target := range cfg.Targets {
				if ctx.Err() != nil {
					return runs, ctx.Err()
				}
				coolDown(ctx, pidOf(target), cfg.Cooldown)
				run := MatrixRun{Target: target, Rate: rate, Rep: rep}
				rctx, cancel := context.WithTimeout(ctx, limit)
				var stdout, stderr bytes.Buffer
				cmd := exec.CommandContext(rctx, cfg.Self, argsFor(target, rate)...)
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				cancel()
				if err == nil {
					var r FanoutResult
					if err = json.Unmarshal(stdout.Bytes(), &r); err == nil {
						run.Result = &r
					}
				}
				if err != nil {
					run.Err = fmt.Sprintf("%v: %s", err, lastLine(stderr.String()))
				}
				runs = append(runs, run)
				log.Info("bench: matrix run", "summary", run.summary())
				if cfg.RawOut != nil {
					b, _ := json.Marshal(run)
					fmt.Fprintf(cfg.RawOut, "%s\n", b)
				}
			}
		}
	}
	return runs, nil
}

func (r MatrixRun) summary() string {
	if r.Result == nil {
		return fmt.Sprintf("rep %d, %s at %g/s: failed: %s", r.Rep, r.Target, r.Rate, r.Err)
	}
	x := r.Result
	return fmt.Sprintf("rep %d, %s at %g/s: %.1f%% delivered, p50 %s p99 %s, %.0f deliveries per server CPU-s, %.0f%% idle before",
		r.Rep, r.Target, r.Rate, x.Percent, ms(x.Latency.P50), ms(x.Latency.P99), x.PerServerCPU, x.IdleBefore)
}

// WriteMatrixTable writes the medians and ranges of each (target, rate)
// as a markdown table.
func WriteMatrixTable(w io.Writer, cfg *MatrixConfig, runs []MatrixRun) {
	fmt.Fprintf(w, "Fanout to one group of %d members, all online, %s per run plus %s drain, %d repetitions; "+
		"median (min–max) over the runs that completed.\n\n", cfg.Members, cfg.Duration, cfg.Drain, cfg.Reps)
	fmt.Fprintln(w, "| target | msgs/s | runs | delivered % | p50 ms | p99 ms | deliveries / server CPU-s | deliveries / server+redis+postgres CPU-s | idle % before |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, rate := range cfg.Rates {
		for _, target := range cfg.Targets {
			var done []*FanoutResult
			failed := 0
			for _, r := range runs {
				if r.Target != target || r.Rate != rate {
					continue
				}
				if r.Result == nil {
					failed++
				} else {
					done = append(done, r.Result)
				}
			}
			col := func(f func(*FanoutResult) float64, format string) string {
				var xs []float64
				for _, r := range done {
					xs = append(xs, f(r))
				}
				return spread(xs, format)
			}
			total := "—"
			if strings.HasPrefix(target, "waggle") {
				total = col(func(r *FanoutResult) float64 { return r.PerTotalCPU }, "%.0f")
			}
			var idle []string
			for _, r := range done {
				idle = append(idle, fmt.Sprintf("%.0f", r.IdleBefore))
			}
			runsCell := strconv.Itoa(len(done))
			if failed > 0 {
				runsCell += fmt.Sprintf(" (+%d failed)", failed)
			}
			fmt.Fprintf(w, "| %s | %g | %s | %s | %s | %s | %s | %s | %s |\n", target, rate, runsCell,
				col(func(r *FanoutResult) float64 { return r.Percent }, "%.1f"),
				col(func(r *FanoutResult) float64 { return r.Latency.P50.Seconds() * 1000 }, "%.1f"),
				col(func(r *FanoutResult) float64 { return r.Latency.P99.Seconds() * 1000 }, "%.1f"),
				col(func(r *FanoutResult) float64 { return r.PerServerCPU }, "%.0f"),
				total, strings.Join(idle, ", "))
		}
	}
}

// spread is "median (min–max)" of xs, or just the value for one, "—" for
// none.
func spread(xs []float64, format string) string {
	if len(xs) == 0 {
		return "—"
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	if len(s) == 1 {
		return fmt.Sprintf(format, med)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", med, s[0], s[len(s)-1])
}

// coolDown waits until pid uses under 10 % of a core over a second, or
// most has passed: a target still busy with the last run's backlog would
// load the next one.
func coolDown(ctx context.Context, pid int, most time.Duration) {
	deadline := time.Now().Add(most)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		a, err := procCPU(pid)
		time.Sleep(time.Second)
		b, err2 := procCPU(pid)
		if err != nil || err2 != nil || b-a < 100*time.Millisecond {
			return
		}
	}
}

func waitHealthy(ctx context.Context, addr string, exited <-chan struct{}) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	return waitUntil(ctx, exited, 60*time.Second, "not healthy", func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		res, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("status %v", res.GetStatus())
		}
		return err
	})
}

func waitListening(ctx context.Context, addr string, exited <-chan struct{}) error {
	return waitUntil(ctx, exited, 30*time.Second, "not listening", func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// waitUntil polls probe every 100 ms until it succeeds, the process exits,
// ctx ends or within passes.
func waitUntil(ctx context.Context, exited <-chan struct{}, within time.Duration, what string, probe func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := probe()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited at start")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %v: %v", what, within, err)
		}
	}
}

func deleteRedisPrefix(url, prefix string, log *slog.Logger) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		log.Warn("bench: redis cleanup", "err", err)
		return
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			log.Warn("bench: redis cleanup", "err", err)
			return
		}
		keys = keys[n:]
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
