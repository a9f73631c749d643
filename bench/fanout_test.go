package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAcker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		push   uint64 // 0: the timer fires instead
		ms     int
		ack    uint64
		arm    bool          // received: arm the timer
		wait   time.Duration // due: wait still
		reason string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"one push is acked 500 ms after it arrived", []step{
			{push: 1, ms: 0, arm: true},
			{ms: 450, wait: 50 * time.Millisecond, reason: "too early"},
			{ms: 500, ack: 1},
			{ms: 700, reason: "nothing pending"},
		}},
		{"the deadline follows the oldest unacked push, the ack covers the highest", []step{
			{push: 1, ms: 0, arm: true},
			{push: 2, ms: 100},
			{push: 3, ms: 490},
			{ms: 500, ack: 3},
			{push: 4, ms: 550, arm: true},
			{ms: 1000, wait: 50 * time.Millisecond},
			{ms: 1050, ack: 4},
		}},
		{"the 64th unacked push is acked at once", append(func() []step {
			var s []step
			for i := uint64(1); i < 64; i++ {
				s = append(s, step{push: i, ms: int(i), arm: i == 1})
			}
			return s
		}(), step{push: 64, ms: 64, ack: 64},
			step{ms: 500, reason: "the timer finds nothing: the ack went already"},
			step{push: 65, ms: 510, arm: true},
			step{ms: 1010, ack: 65})},
		{"a resent push is acked again", []step{
			{push: 5, ms: 0, arm: true},
			{ms: 500, ack: 5},
			{push: 5, ms: 10_000, arm: true},
			{ms: 10_500, ack: 5},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a acker
			for i, s := range tt.steps {
				if s.push > 0 {
					ack, arm := a.received(s.push, at(s.ms))
					if ack != s.ack || arm != s.arm {
						t.Fatalf("step %d: push %d at %d ms: ack %d arm %v, want %d %v", i, s.push, s.ms, ack, arm, s.ack, s.arm)
					}
					continue
				}
				ack, wait := a.due(at(s.ms))
				if ack != s.ack || wait != s.wait {
					t.Fatalf("step %d: timer at %d ms (%s): ack %d wait %v, want %d %v", i, s.ms, s.reason, ack, wait, s.ack, s.wait)
				}
			}
		})
	}
}

func TestKeySet(t *testing.T) {
	tests := []struct {
		keys          []uint64
		dups, gaps, n int64
	}{
		{keys: []uint64{5, 6, 7}, n: 3},
		{keys: []uint64{5, 7, 7, 9}, dups: 1, gaps: 2, n: 3},
		{keys: []uint64{1000, 3, 500, 3, 1000}, dups: 2, gaps: 998 - 3, n: 3},
		{keys: []uint64{200, 63, 64, 127, 128}, gaps: 200 - 63 + 1 - 5, n: 5}, // keys below the first, across words
		{keys: []uint64{0, 1 << 20}, gaps: 1<<20 - 1, n: 2},
	}
	for _, tt := range tests {
		var s keySet
		for _, k := range tt.keys {
			s.add(k)
		}
		var bitsSet int64
		for _, w := range s.words {
			bitsSet += int64(bits.OnesCount64(w))
		}
		if s.dups != tt.dups || s.gaps() != tt.gaps || s.n != tt.n || bitsSet != tt.n {
			t.Errorf("keys %v: dups %d gaps %d n %d (%d bits), want %d %d %d", tt.keys, s.dups, s.gaps(), s.n, bitsSet, tt.dups, tt.gaps, tt.n)
		}
	}
}

func TestTallyCountsTheWindowOnce(t *testing.T) {
	w := &window{}
	w.from.Store(10) // messages 10 to 19
	w.to.Store(20)
	w.until.Store(5000)
	var ta tally
	ta.add(w, 1500, 1, 900, 9)   // sent before the window
	ta.add(w, 1600, 2, 1000, 10) // counts: 600 ns
	ta.add(w, 1700, 2, 1000, 10) // duplicate
	ta.add(w, 2500, 3, 1999, 19) // counts
	ta.add(w, 5001, 4, 1500, 15) // after the drain
	ta.add(w, 3000, 5, 2000, 20) // sent after the window
	ta.add(w, 3000, 6, 0, 0)     // not a bench message
	if ta.delivered != 2 || ta.keys.dups != 1 || ta.keys.gaps() != 0 || ta.latency.Summary(false).Count != 2 {
		t.Fatalf("delivered %d dups %d gaps %d latencies %d", ta.delivered, ta.keys.dups, ta.keys.gaps(), ta.latency.Summary(false).Count)
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i) * 37 * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	if got, want := m.Summary(false), all.Summary(false); got != want {
		t.Fatalf("merged %+v, want %+v", got, want)
	}
}

func TestPayloadsCarrySendTimeAndIndex(t *testing.T) {
	at := time.Unix(1700000000, 987654321)
	sent, idx, ok := decodePayload(encodePayload(at, 123456, 200))
	if !ok || sent != at.UnixNano() || idx != 123456 {
		t.Fatalf("waggle payload: %d %d %v", sent, idx, ok)
	}
	for _, size := range []int{10, 200, 1000} {
		b := encodeCentrifugoData(at, 42, size)
		var d centrifugoData
		if err := json.Unmarshal(b, &d); err != nil || d.T != at.UnixNano() || d.I != 42 {
			t.Fatalf("size %d: %s: %+v %v", size, b, d, err)
		}
		if size >= 100 && len(b) != size {
			t.Errorf("size %d: %d bytes: %s", size, len(b), b)
		}
	}
}

func TestHS256(t *testing.T) {
	// The example token of RFC 7519's common test vector (jwt.io).
	tok, err := hs256("your-256-bit-secret", struct {
		Sub  string `json:"sub"`
		Name string `json:"name"`
		Iat  int64  `json:"iat"`
	}{"1234567890", "John Doe", 1516239022})
	want := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	if err != nil || tok != want {
		t.Fatalf("hs256 = %s, %v\nwant    %s", tok, err, want)
	}
}

func TestCentrifugoConfig(t *testing.T) {
	b, err := CentrifugoConfig("127.0.0.1:18300", CentrifugoAuth{Secret: "s", APIKey: "k", Channel: "c"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		HTTPServer struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"http_server"`
		Engine struct {
			Type string `json:"type"`
		} `json:"engine"`
		Client struct {
			Token struct {
				HMAC string `json:"hmac_secret_key"`
			} `json:"token"`
		} `json:"client"`
		HTTPAPI struct {
			Key string `json:"key"`
		} `json:"http_api"`
		Channel struct {
			WithoutNamespace struct {
				Subscribe bool `json:"allow_subscribe_for_client"`
			} `json:"without_namespace"`
		} `json:"channel"`
		UsageStats struct {
			Disabled bool `json:"disabled"`
		} `json:"usage_stats"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPServer.Address != "127.0.0.1" || cfg.HTTPServer.Port != 18300 || cfg.Engine.Type != "memory" || cfg.Client.Token.HMAC != "s" ||
		cfg.HTTPAPI.Key != "k" || !cfg.Channel.WithoutNamespace.Subscribe || !cfg.UsageStats.Disabled {
		t.Fatalf("config %s", b)
	}
	if _, err := CentrifugoConfig("nohost", CentrifugoAuth{}); err == nil {
		t.Fatal("an address without a port was accepted")
	}
}

func TestCPUStatAndDelta(t *testing.T) {
	idle, total, err := cpuStat([]byte("cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 1 2 3 4\n"))
	if err != nil || idle != 1020 || total != 100+5+50+1000+20+1+2+3 {
		t.Fatalf("cpuStat = %d, %d, %v", idle, total, err)
	}
	if _, _, err := cpuStat([]byte("intr 1 2 3")); err == nil {
		t.Fatal("a line without cpu parsed")
	}
	if idle, err := (machineCPU{idle: 100, total: 200}).idleUntil(machineCPU{idle: 130, total: 240}); err != nil || idle != 75 {
		t.Fatalf("idleUntil = %v, %v; want 75", idle, err)
	}
	if _, err := (machineCPU{idle: 100, total: 200}).idleUntil(machineCPU{idle: 100, total: 200}); err == nil {
		t.Fatal("idleUntil of no ticks did not fail")
	}
	s := time.Second
	start := map[int]time.Duration{1: 2 * s, 2: 5 * s, 3: s}
	end := map[int]time.Duration{1: 3 * s, 2: 5 * s, 4: 2 * s} // 3 ended, 4 started
	if d := cpuDelta(start, end); d != 3*s {
		t.Fatalf("cpuDelta = %v, want 3s", d)
	}
}

func TestFanoutConfigDefaults(t *testing.T) {
	tests := []struct {
		cfg  FanoutConfig
		err  string
		want func(FanoutConfig) bool
	}{
		{cfg: FanoutConfig{Target: TargetWaggle, Edges: []string{"http://e"}, Rate: 10}, want: func(c FanoutConfig) bool {
			return c.API == "http://e" && c.Members == 1000 && c.Online == 1000 && c.Duration == 10*time.Second &&
				c.Drain == 2*time.Second && c.PayloadBytes == 200 && c.Protocol == ProtocolConnect && c.Centrifugo == CentrifugoDefaults
		}},
		{cfg: FanoutConfig{Target: TargetWaggle, Edges: []string{"http://e"}, Rate: 10, Members: 10000, Online: 2000}, want: func(c FanoutConfig) bool {
			return c.Members == 10000 && c.Online == 2000
		}},
		{cfg: FanoutConfig{Target: "nats", Edges: []string{"http://e"}, Rate: 10}, err: `target "nats"`},
		{cfg: FanoutConfig{Target: TargetFloor, Rate: 10}, err: "edge URL"},
		{cfg: FanoutConfig{Target: TargetWaggle, Edges: []string{"http://e"}}, err: "rate"},
		{cfg: FanoutConfig{Target: TargetWaggle, Edges: []string{"http://e"}, SetupOnly: true}},
		{cfg: FanoutConfig{Target: TargetFloor, Edges: []string{"http://e"}, SetupOnly: true}, err: "only the waggle target"},
		{cfg: FanoutConfig{Target: TargetWaggle, Edges: []string{"http://e"}, Rate: 1, Members: 20000}, err: "members"},
		{cfg: FanoutConfig{Target: TargetWaggle, Edges: []string{"http://e"}, Rate: 1, Members: 10, Online: 11}, err: "online"},
		{cfg: FanoutConfig{Target: TargetFloor, Edges: []string{"http://e"}, Rate: 1, Protocol: "ws"}, err: "protocol"},
	}
	for _, tt := range tests {
		c := tt.cfg
		err := c.setDefaults()
		var ce ConfigError
		switch {
		case tt.err != "" && (!errors.As(err, &ce) || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%+v: error %v, want one about %q", tt.cfg, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.want != nil && !tt.want(c):
			t.Errorf("%+v: defaults %+v", tt.cfg, c)
		}
	}
}

func TestSpread(t *testing.T) {
	tests := []struct {
		xs   []float64
		want string
	}{
		{nil, "—"},
		{[]float64{3.14159}, "3.1"},
		{[]float64{3, 1, 2}, "2.0 (1.0–3.0)"},
		{[]float64{4, 1, 2, 3}, "2.5 (1.0–4.0)"},
	}
	for _, tt := range tests {
		if got := spread(tt.xs, "%.1f"); got != tt.want {
			t.Errorf("spread(%v) = %q, want %q", tt.xs, got, tt.want)
		}
	}
}

func TestWriteMatrixTable(t *testing.T) {
	res := func(pct float64, p50 time.Duration, perCPU float64) *FanoutResult {
		return &FanoutResult{Percent: pct, Latency: Summary{P50: p50, P99: 2 * p50}, PerServerCPU: perCPU, PerTotalCPU: perCPU / 2, IdleBefore: 97}
	}
	runs := []MatrixRun{
		{Target: "waggle-grpc", Rate: 10, Rep: 1, Result: res(100, 2*time.Millisecond, 20000)},
		{Target: "waggle-grpc", Rate: 10, Rep: 2, Result: res(90, 4*time.Millisecond, 10000)},
		{Target: "waggle-grpc", Rate: 10, Rep: 3, Err: "timed out"},
		{Target: "centrifugo", Rate: 10, Rep: 1, Result: res(100, time.Millisecond, 100000)},
	}
	var b bytes.Buffer
	WriteMatrixTable(&b, &MatrixConfig{Targets: []string{"waggle-grpc", "centrifugo"}, Rates: []float64{10}, Members: 1000, Reps: 3,
		Duration: 10 * time.Second, Drain: 2 * time.Second}, runs)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"| waggle-grpc | 10 | 2 (+1 failed) | 95.0 (90.0–100.0) | 3.0 (2.0–4.0) | 6.0 (4.0–8.0) | 15000 (10000–20000) | 7500 (5000–10000) | 97, 97 |",
		"| centrifugo | 10 | 1 | 100.0 | 1.0 | 2.0 | 100000 | — | 97 |",
	}
	if !slices.Equal(lines[len(lines)-2:], want) {
		t.Fatalf("table:\n%s\nwant rows:\n%s", b.String(), strings.Join(want, "\n"))
	}
}

func TestDueBefore(t *testing.T) {
	tests := []struct {
		d    time.Duration
		rate float64
		want int64
	}{
		{0, 100, 0},
		{10 * time.Second, 600, 6000},
		{300 * time.Millisecond, 100, 30}, // 0.3*100 is 30.000000000000004 in floating point
		{time.Second, 7.5, 8},             // messages at 0, 0.133, ..., 0.933 s
		{12 * time.Second, 10, 120},
	}
	for _, tt := range tests {
		if got := dueBefore(tt.d, tt.rate); got != tt.want {
			t.Errorf("dueBefore(%v, %g) = %d, want %d", tt.d, tt.rate, got, tt.want)
		}
	}
}

func TestRotate(t *testing.T) {
	if got := rotate([]string{"a", "b", "c"}, 4); !slices.Equal(got, []string{"b", "c", "a"}) {
		t.Fatalf("rotate = %v", got)
	}
	if got := rotate(nil, 3); got != nil {
		t.Fatalf("rotate(nil) = %v", got)
	}
}

func TestStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	st, err := loadState(path)
	if err != nil || st.Server != "" || len(st.Members) != 0 {
		t.Fatalf("a missing file: %+v, %v", st, err)
	}
	st = &groupState{Server: "http://s", Conversation: "c", InGroup: 2, Members: []stateMember{{"u0", "d0", "r0"}, {"u1", "d1", "r1"}}}
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil || got.Server != "http://s" || got.Conversation != "c" || got.InGroup != 2 || !slices.Equal(got.Members, st.Members) ||
		!slices.Equal(got.userIDs(1, 2), []string{"u1"}) {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the state holds refresh tokens: mode %v, %v", fi.Mode(), err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path); err == nil {
		t.Fatal("a broken file loaded")
	}
}
