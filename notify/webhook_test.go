package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const testSecret = "whsec_test_0123456789abcdef0123456789abcdef"

// waitLong bounds every wait in these tests. It is generous on purpose:
// nothing here asserts that something is fast, only that it happens.
const waitLong = 10 * time.Second

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func testNotification(i int) Notification {
	return Notification{
		UserID:            fmt.Sprintf("0b6c3f4e-0000-4000-8000-%012d", i),
		ConversationID:    "c0ffee00-0000-4000-8000-000000000001",
		ConversationTitle: "Hive",
		MessageID:         fmt.Sprintf("7d1e2a90-0000-4000-8000-%012d", i),
		Seq:               uint64(41 + i),
		SenderUserID:      "5e4de400-0000-4000-8000-000000000002",
		SenderName:        "Maya",
		Preview:           "the queen is out of the hive",
		Badge:             7,
		Time:              time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC),
	}
}

// request is what the test receiver saw.
type request struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint that records requests and answers each
// with respond(i, ...) where i counts requests from 0.
type receiver struct {
	*httptest.Server
	respond func(i int, w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []request
}

func newReceiver(t *testing.T, respond func(i int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client went away
		}
		rc.mu.Lock()
		i := len(rc.reqs)
		rc.reqs = append(rc.reqs, request{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		rc.respond(i, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// started is a Webhook under test with its Run goroutine.
type started struct {
	*Webhook
	cancel  context.CancelFunc
	runDone chan struct{}

	mu     sync.Mutex
	delays []time.Duration
}

// startWebhook makes a Webhook for url whose retry waits are recorded and
// skipped (so tests can use real backoff settings without waiting), runs
// it, and stops it when the test ends.
func startWebhook(t *testing.T, cfg WebhookConfig, log *slog.Logger) *started {
	t.Helper()
	s := newWebhook(t, cfg, log)
	s.start(t)
	return s
}

func newWebhook(t *testing.T, cfg WebhookConfig, log *slog.Logger) *started {
	t.Helper()
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	s := &started{Webhook: NewWebhook(cfg, log), runDone: make(chan struct{})}
	s.sleep = func(ctx context.Context, d time.Duration) error {
		s.mu.Lock()
		s.delays = append(s.delays, d)
		s.mu.Unlock()
		return ctx.Err()
	}
	return s
}

func (s *started) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.runDone)
		s.Run(ctx)
	}()
	t.Cleanup(func() { s.stop(t) })
}

// stop cancels Run and waits for it to return.
func (s *started) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case <-s.runDone:
	case <-time.After(waitLong):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func (s *started) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

// waitFor polls cond until it holds, failing the test after waitLong.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSettled waits until n notifications have an outcome.
func waitSettled(t *testing.T, w *Webhook, n uint64) Stats {
	t.Helper()
	var st Stats
	waitFor(t, "notifications to settle", func() bool {
		st = w.Stats()
		return st.Sent+st.Failed+st.Dropped+st.Lost >= n
	})
	return st
}

// checkRequest checks what every webhook request must be.
func checkRequest(t *testing.T, r request, want Notification) {
	t.Helper()
	if r.method != http.MethodPost {
		t.Errorf("method = %s, want POST", r.method)
	}
	if r.path != "/hook" {
		t.Errorf("path = %s, want /hook", r.path)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json",
		"User-Agent":   "waggle-notify/1",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if id := r.header.Get("Waggle-Delivery"); !uuidRE.MatchString(id) {
		t.Errorf("Waggle-Delivery = %q, want a UUID", id)
	}
	sig := r.header.Get("Waggle-Signature")
	if err := VerifySignature(testSecret, sig, r.body, time.Now(), DefaultTolerance); err != nil {
		t.Errorf("VerifySignature(%q) = %v", sig, err)
	}
	if err := VerifySignature("another secret", sig, r.body, time.Now(), DefaultTolerance); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("VerifySignature with another secret = %v, want ErrSignatureMismatch", err)
	}
	var got Notification
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if !got.Time.Equal(want.Time) {
		t.Errorf("time = %v, want %v", got.Time, want.Time)
	}
	got.Time = want.Time
	if got != want {
		t.Errorf("body decodes to %+v, want %+v", got, want)
	}
}

// step is how the receiver answers one attempt.
type step struct {
	status     int
	retryAfter string
	hangUp     bool // close the connection without an answer
}

func TestWebhookDelivery(t *testing.T) {
	ok := step{status: http.StatusOK}
	tests := []struct {
		name         string
		cfg          WebhookConfig
		steps        []step // the last one repeats
		wantAttempts int
		want         Stats
		// wantWaits checks the waits between attempts; nil: each is within
		// the jittered exponential backoff.
		wantWaits func(t *testing.T, cfg WebhookConfig, waits []time.Duration)
	}{
		{
			name:         "200 at once",
			steps:        []step{ok},
			wantAttempts: 1,
			want:         Stats{Sent: 1},
		},
		{
			name:         "204 is success too",
			steps:        []step{{status: http.StatusNoContent}},
			wantAttempts: 1,
			want:         Stats{Sent: 1},
		},
		{
			name:         "500 twice then success",
			steps:        []step{{status: 500}, {status: 500}, ok},
			wantAttempts: 3,
			want:         Stats{Sent: 1, Retried: 2},
		},
		{
			name:         "503 and 502 then success",
			steps:        []step{{status: 503}, {status: 502}, {status: 201}},
			wantAttempts: 3,
			want:         Stats{Sent: 1, Retried: 2},
		},
		{
			name:         "connection closed without an answer is retried",
			steps:        []step{{hangUp: true}, ok},
			wantAttempts: 2,
			want:         Stats{Sent: 1, Retried: 1},
		},
		{
			name:         "429 with Retry-After waits that long",
			cfg:          WebhookConfig{MaxBackoff: time.Minute},
			steps:        []step{{status: 429, retryAfter: "7"}, ok},
			wantAttempts: 2,
			want:         Stats{Sent: 1, Retried: 1},
			wantWaits: func(t *testing.T, _ WebhookConfig, waits []time.Duration) {
				if len(waits) != 1 || waits[0] < 7*time.Second {
					t.Errorf("waits = %v, want one of at least 7s", waits)
				}
			},
		},
		{
			name:         "Retry-After shorter than the backoff waits the backoff",
			cfg:          WebhookConfig{InitialBackoff: 4 * time.Second, MaxBackoff: time.Minute},
			steps:        []step{{status: 503, retryAfter: "1"}, ok},
			wantAttempts: 2,
			want:         Stats{Sent: 1, Retried: 1},
		},
		{
			name:         "429 without Retry-After backs off",
			steps:        []step{{status: 429}, ok},
			wantAttempts: 2,
			want:         Stats{Sent: 1, Retried: 1},
		},
		{
			name:         "Retry-After beyond MaxBackoff gives up",
			steps:        []step{{status: 429, retryAfter: "3600"}, ok},
			wantAttempts: 1,
			want:         Stats{Failed: 1},
		},
		{
			name:         "400 is final",
			steps:        []step{{status: 400}, ok},
			wantAttempts: 1,
			want:         Stats{Failed: 1},
		},
		{
			name:         "401 is final",
			steps:        []step{{status: 401}, ok},
			wantAttempts: 1,
			want:         Stats{Failed: 1},
		},
		{
			name:         "404 is final even with Retry-After",
			steps:        []step{{status: 404, retryAfter: "1"}, ok},
			wantAttempts: 1,
			want:         Stats{Failed: 1},
		},
		{
			name:         "redirect is not followed and is final",
			steps:        []step{{status: http.StatusTemporaryRedirect}, ok},
			wantAttempts: 1,
			want:         Stats{Failed: 1},
		},
		{
			name:         "gives up after MaxAttempts",
			cfg:          WebhookConfig{MaxAttempts: 3},
			steps:        []step{{status: 500}},
			wantAttempts: 3,
			want:         Stats{Failed: 1, Retried: 2},
		},
		{
			name:         "default MaxAttempts is 5",
			steps:        []step{{status: 503}},
			wantAttempts: 5,
			want:         Stats{Failed: 1, Retried: 4},
		},
		{
			name:         "backoff is capped at MaxBackoff",
			cfg:          WebhookConfig{MaxAttempts: 8, InitialBackoff: time.Second, MaxBackoff: 5 * time.Second},
			steps:        []step{{status: 500}},
			wantAttempts: 8,
			want:         Stats{Failed: 1, Retried: 7},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
				s := tt.steps[min(i, len(tt.steps)-1)]
				switch {
				case s.hangUp:
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
					return
				}
				if s.status >= 300 && s.status < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				if s.retryAfter != "" {
					w.Header().Set("Retry-After", s.retryAfter)
				}
				w.WriteHeader(s.status)
				io.WriteString(w, "answer body")
			})
			cfg := tt.cfg
			cfg.URL = rc.URL + "/hook"
			wh := startWebhook(t, cfg, nil)
			n := testNotification(1)
			wh.Notify(n)

			st := waitSettled(t, wh.Webhook, 1)
			if st != tt.want {
				t.Errorf("Stats() = %+v, want %+v", st, tt.want)
			}
			reqs := rc.requests()
			if len(reqs) != tt.wantAttempts {
				t.Fatalf("receiver saw %d attempts, want %d", len(reqs), tt.wantAttempts)
			}
			for i, r := range reqs {
				checkRequest(t, r, n)
				if id, first := r.header.Get("Waggle-Delivery"), reqs[0].header.Get("Waggle-Delivery"); id != first {
					t.Errorf("attempt %d: Waggle-Delivery = %q, want %q as on the first", i+1, id, first)
				}
				if !bytes.Equal(r.body, reqs[0].body) {
					t.Errorf("attempt %d: body differs from the first", i+1)
				}
			}
			waits := wh.waits()
			if len(waits) != tt.wantAttempts-1 {
				t.Errorf("waited %d times, want %d", len(waits), tt.wantAttempts-1)
			}
			if tt.wantWaits != nil {
				tt.wantWaits(t, wh.cfg, waits)
				return
			}
			for i, d := range waits {
				base := min(wh.cfg.InitialBackoff<<i, wh.cfg.MaxBackoff)
				if d < base/2 || d > base {
					t.Errorf("wait %d = %v, want within [%v, %v]", i+1, d, base/2, base)
				}
			}
		})
	}
}

func TestWebhookDefaults(t *testing.T) {
	w := NewWebhook(WebhookConfig{URL: "https://push.example/hook", Secret: "s"}, nil)
	want := WebhookConfig{
		URL: "https://push.example/hook", Secret: "s",
		QueueSize: 10_000, Workers: 4, MaxAttempts: 5,
		InitialBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, Timeout: 10 * time.Second,
	}
	got := w.cfg
	got.Client = nil
	if got != want {
		t.Errorf("config with defaults = %+v, want %+v", got, want)
	}
	if cap(w.queue) != 10_000 {
		t.Errorf("queue capacity = %d, want 10000", cap(w.queue))
	}
	if w.client == nil || w.client.CheckRedirect == nil {
		t.Error("default client must not follow redirects")
	}
}

func TestWebhookConfigValidate(t *testing.T) {
	valid := WebhookConfig{URL: "https://push.example/hook", Secret: "s"}
	tests := []struct {
		name    string
		edit    func(*WebhookConfig)
		wantErr string // "" means valid
	}{
		{"valid", func(*WebhookConfig) {}, ""},
		{"http is allowed", func(c *WebhookConfig) { c.URL = "http://10.0.0.1:8080/push" }, ""},
		{"no URL", func(c *WebhookConfig) { c.URL = "" }, "URL is required"},
		{"relative URL", func(c *WebhookConfig) { c.URL = "/hook" }, "absolute http or https"},
		{"other scheme", func(c *WebhookConfig) { c.URL = "ftp://push.example/hook" }, "absolute http or https"},
		{"unparsable URL", func(c *WebhookConfig) { c.URL = "http://[::1" }, "URL:"},
		{"no secret", func(c *WebhookConfig) { c.Secret = "" }, "Secret is required"},
		{"negative workers", func(c *WebhookConfig) { c.Workers = -1 }, "Workers must not be negative"},
		{"negative queue", func(c *WebhookConfig) { c.QueueSize = -1 }, "QueueSize must not be negative"},
		{"negative timeout", func(c *WebhookConfig) { c.Timeout = -time.Second }, "Timeout must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				NewWebhook(cfg, nil) // must not panic
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			defer func() {
				if recover() == nil {
					t.Error("NewWebhook did not panic on an invalid config")
				}
			}()
			NewWebhook(cfg, nil)
		})
	}
}

// TestWebhookAttemptTimeout: an attempt the receiver does not answer is
// cancelled after Timeout and retried. (Later attempts may time out too on
// a very slow machine, so their number is not fixed.)
func TestWebhookAttemptTimeout(t *testing.T) {
	cancelled := make(chan struct{})
	rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			<-r.Context().Done()
			close(cancelled)
		}
	})
	wh := startWebhook(t, WebhookConfig{URL: rc.URL + "/hook", Timeout: 50 * time.Millisecond, MaxAttempts: 100}, nil)
	n := testNotification(0)
	wh.Notify(n)
	st := waitSettled(t, wh.Webhook, 1)
	if st.Sent != 1 || st.Retried == 0 {
		t.Errorf("Stats() = %+v, want Sent 1 after retries", st)
	}
	select {
	case <-cancelled:
	case <-time.After(waitLong):
		t.Fatal("the receiver never saw the first attempt cancelled")
	}
	reqs := rc.requests()
	if len(reqs) < 2 {
		t.Fatalf("receiver saw %d attempts, want at least 2", len(reqs))
	}
	for _, r := range reqs {
		checkRequest(t, r, n)
		if r.header.Get("Waggle-Delivery") != reqs[0].header.Get("Waggle-Delivery") {
			t.Error("Waggle-Delivery changed between attempts")
		}
	}
}

// TestWebhookWorkers shows Workers requests in flight at once: the receiver
// answers none until all of them have arrived.
func TestWebhookWorkers(t *testing.T) {
	const workers = 3
	arrived := make(chan struct{}, workers)
	all := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	count := 0
	rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		mu.Lock()
		count++
		if count == workers {
			once.Do(func() { close(all) })
		}
		mu.Unlock()
		select {
		case <-all:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	wh := startWebhook(t, WebhookConfig{URL: rc.URL + "/hook", Workers: workers}, nil)
	for i := range workers {
		wh.Notify(testNotification(i))
	}
	select {
	case <-all:
	case <-time.After(waitLong):
		t.Fatalf("only %d of %d requests were in flight at once", len(arrived), workers)
	}
	st := waitSettled(t, wh.Webhook, workers)
	if st.Sent != workers {
		t.Errorf("Stats() = %+v, want Sent %d", st, workers)
	}
	ids := map[string]bool{}
	for _, r := range rc.requests() {
		ids[r.header.Get("Waggle-Delivery")] = true
	}
	if len(ids) != workers {
		t.Errorf("%d distinct Waggle-Delivery ids for %d notifications", len(ids), workers)
	}
}

// TestWebhookQueueFull fills the queue while the only worker is stuck on a
// receiver that does not answer: Notify still returns at once and drops
// what does not fit.
func TestWebhookQueueFull(t *testing.T) {
	const queueSize, extra = 2, 3
	first := make(chan struct{})
	release := make(chan struct{})
	rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			close(first)
		}
		select {
		case <-release:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	})
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	wh := newWebhook(t, WebhookConfig{URL: rc.URL + "/hook", Workers: 1, QueueSize: queueSize}, log)
	wh.dropLog.every = time.Hour // one warning however slow this machine is
	wh.start(t)

	wh.Notify(testNotification(0))
	select {
	case <-first:
	case <-time.After(waitLong):
		t.Fatal("the receiver never got the first request")
	}
	// The worker is now stuck in flight: queueSize more fit, the rest drop.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= queueSize+extra; i++ {
			wh.Notify(testNotification(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Notify blocked while the queue was full")
	}
	if st := wh.Stats(); st.Dropped != extra || st.Queued != queueSize || st.Sent != 0 {
		t.Errorf("Stats() = %+v, want Dropped %d, Queued %d, Sent 0", st, extra, queueSize)
	}
	if got := strings.Count(logs.String(), "queue full"); got != 1 {
		t.Errorf("%d queue-full warnings, want 1 (rate limited):\n%s", got, logs.String())
	}

	close(release)
	st := waitSettled(t, wh.Webhook, 1+queueSize+extra)
	if want := (Stats{Sent: 1 + queueSize, Dropped: extra}); st != want {
		t.Errorf("after release: Stats() = %+v, want %+v", st, want)
	}
}

// TestWebhookRunStops cancels Run while a request hangs and more wait:
// Run returns, the request is cancelled, and everything not delivered is
// counted as lost.
func TestWebhookRunStops(t *testing.T) {
	inFlight := make(chan struct{})
	cancelled := make(chan struct{})
	rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			close(inFlight)
		}
		<-r.Context().Done()
		if i == 0 {
			close(cancelled)
		}
	})
	wh := startWebhook(t, WebhookConfig{URL: rc.URL + "/hook", Workers: 1}, nil)
	for i := range 4 {
		wh.Notify(testNotification(i))
	}
	select {
	case <-inFlight:
	case <-time.After(waitLong):
		t.Fatal("the receiver never got the first request")
	}

	wh.stop(t)
	select {
	case <-cancelled:
	case <-time.After(waitLong):
		t.Fatal("the request in flight was not cancelled")
	}
	if st, want := wh.Stats(), (Stats{Lost: 4}); st != want {
		t.Errorf("Stats() = %+v, want %+v", st, want)
	}
	wh.Notify(testNotification(9))
	if st, want := wh.Stats(), (Stats{Lost: 5}); st != want {
		t.Errorf("Notify after Run: Stats() = %+v, want %+v", st, want)
	}

	// A Webhook runs once: a second Run returns at once.
	again := make(chan struct{})
	go func() { defer close(again); wh.Run(context.Background()) }()
	select {
	case <-again:
	case <-time.After(waitLong):
		t.Fatal("a second Run did not return")
	}
	if n := len(rc.requests()); n != 1 {
		t.Errorf("receiver saw %d requests, want 1", n)
	}
}

// TestWebhookStopWhileBackingOff stops Run during a retry wait (real sleep,
// long backoff): the notification is lost, not failed.
func TestWebhookStopWhileBackingOff(t *testing.T) {
	rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	wh := NewWebhook(WebhookConfig{URL: rc.URL + "/hook", Secret: testSecret, InitialBackoff: time.Hour, MaxBackoff: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); wh.Run(ctx) }()
	wh.Notify(testNotification(0))
	waitFor(t, "the first retry to be scheduled", func() bool { return wh.Stats().Retried == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Run did not return while a worker was backing off")
	}
	if st, want := wh.Stats(), (Stats{Lost: 1, Retried: 1}); st != want {
		t.Errorf("Stats() = %+v, want %+v", st, want)
	}
}

func TestWebhookNotifyBeforeRun(t *testing.T) {
	rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {})
	wh := newWebhook(t, WebhookConfig{URL: rc.URL + "/hook"}, nil)
	n := testNotification(0)
	n.Time = time.Time{}
	wh.Notify(n)
	if st := wh.Stats(); st.Queued != 1 {
		t.Fatalf("Stats() = %+v, want one queued", st)
	}
	wh.start(t)
	waitSettled(t, wh.Webhook, 1)
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver saw %d requests, want 1", len(reqs))
	}
	var got Notification
	if err := json.Unmarshal(reqs[0].body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Time.IsZero() {
		t.Error("a zero Time was sent; want the time Notify was called")
	}
}

func TestWebhookJSON(t *testing.T) {
	body, err := json.Marshal(testNotification(3))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatal(err)
	}
	want := []string{"user_id", "conversation_id", "conversation_title", "message_id", "seq",
		"sender_user_id", "sender_name", "preview", "badge", "time"}
	if len(fields) != len(want) {
		t.Errorf("JSON has %d fields, want %d: %s", len(fields), len(want), body)
	}
	for _, k := range want {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, body)
		}
	}
	if fields["seq"] != float64(44) || fields["time"] != "2026-03-01T12:00:00.123456789Z" {
		t.Errorf("seq/time encoded as %v/%v", fields["seq"], fields["time"])
	}
}

func TestBackoff(t *testing.T) {
	w := NewWebhook(WebhookConfig{URL: "http://x/", Secret: "s", InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}, nil)
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{60, 500 * time.Millisecond, time.Second},
		{1000, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := w.backoff(tt.attempt)
			if d < tt.min || d > tt.max {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tt.attempt, d, tt.min, tt.max)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("backoff(%d) has no jitter: always %v", tt.attempt, seen)
		}
	}
	huge := NewWebhook(WebhookConfig{URL: "http://x/", Secret: "s", InitialBackoff: math.MaxInt64 / 3, MaxBackoff: math.MaxInt64}, nil)
	for attempt := 1; attempt < 70; attempt++ {
		if d := huge.backoff(attempt); d <= 0 {
			t.Fatalf("backoff(%d) = %v with huge settings, want positive", attempt, d)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"-3", 0},
		{"1.5", 0},
		{"soon", 0},
		{"99999999999999999999", math.MaxInt64},
		{"9223372036854775807", math.MaxInt64},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRateLimit(t *testing.T) {
	r := rateLimit{every: 10 * time.Second}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		at             time.Duration
		wantOK         bool
		wantSuppressed uint64
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{time.Minute, true, 1},
	}
	for _, s := range steps {
		ok, suppressed := r.allow(t0.Add(s.at))
		if ok != s.wantOK || suppressed != s.wantSuppressed {
			t.Errorf("allow(+%v) = %v, %d; want %v, %d", s.at, ok, suppressed, s.wantOK, s.wantSuppressed)
		}
	}
}

func TestDeliveryID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newDeliveryID()
		if !uuidRE.MatchString(id) {
			t.Fatalf("newDeliveryID() = %q, want a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("newDeliveryID() repeated %q", id)
		}
		seen[id] = true
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
