package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	randv2 "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WebhookConfig configures a Webhook. Every zero field takes the default in
// its comment; URL and Secret are required (see Validate).
type WebhookConfig struct {
	// URL receives a POST per notification. http or https; use https
	// anywhere but a private network: the body holds message previews.
	URL string
	// Secret keys the HMAC-SHA256 in Waggle-Signature; the receiver holds
	// the same. Use at least 32 random bytes.
	Secret string
	// QueueSize is how many notifications may wait for a worker; Notify
	// drops what does not fit. Default 10,000.
	QueueSize int
	// Workers is how many requests may be in flight at once. Default 4.
	Workers int
	// MaxAttempts is how many times one notification is tried before it
	// counts as failed. Default 5.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; each later retry
	// waits twice as long as the one before, up to MaxBackoff, with jitter
	// (a random wait between half of that and all of it). Default 500 ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between attempts (it is raised to
	// InitialBackoff if lower). A Retry-After asking for
	// a longer wait ends the attempts (failed): a push that late is of no
	// use, and retrying sooner than asked would ignore the receiver.
	// Default 30 s.
	MaxBackoff time.Duration
	// Timeout bounds each attempt, from sending the request to reading the
	// answer. Default 10 s.
	Timeout time.Duration
	// Client sends the requests. Its own Timeout, if any, applies too.
	// Default: a client with its own connection pool that does not follow
	// redirects (a 3xx answer fails the notification).
	Client *http.Client
}

const (
	defaultQueueSize      = 10_000
	defaultWorkers        = 4
	defaultMaxAttempts    = 5
	defaultInitialBackoff = 500 * time.Millisecond
	defaultMaxBackoff     = 30 * time.Second
	defaultTimeout        = 10 * time.Second

	// logEvery is the least time between two warnings of one kind (queue
	// full, delivery failed); the ones in between are counted and the
	// next warning says how many were suppressed.
	logEvery = 10 * time.Second
	// maxDrain is how much of an answer's body is read (so the connection
	// can be reused); errSnippet is how much of a failed one is logged.
	maxDrain   = 64 << 10
	errSnippet = 256
)

// Validate reports what is wrong with c: a missing or non-http(s) URL, an
// empty Secret, a negative number. Check operator input with it before
// NewWebhook, which panics on an invalid config.
func (c WebhookConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("URL is required"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("URL: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("URL must be an absolute http or https URL"))
	}
	if c.Secret == "" {
		errs = append(errs, errors.New("Secret is required"))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"QueueSize", int64(c.QueueSize)},
		{"Workers", int64(c.Workers)},
		{"MaxAttempts", int64(c.MaxAttempts)},
		{"InitialBackoff", int64(c.InitialBackoff)},
		{"MaxBackoff", int64(c.MaxBackoff)},
		{"Timeout", int64(c.Timeout)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", f.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("notify: webhook config: %w", err)
	}
	return nil
}

func (c WebhookConfig) withDefaults() WebhookConfig {
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.QueueSize, defaultQueueSize)
	setInt(&c.Workers, defaultWorkers)
	setInt(&c.MaxAttempts, defaultMaxAttempts)
	setDur(&c.InitialBackoff, defaultInitialBackoff)
	setDur(&c.MaxBackoff, defaultMaxBackoff)
	setDur(&c.Timeout, defaultTimeout)
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = c.InitialBackoff
	}
	return c
}

// Stats counts what a Webhook did with the notifications it was given.
// Every notification ends in exactly one of Sent, Failed, Dropped and Lost,
// or is still Queued or in flight.
type Stats struct {
	// Sent: answered 2xx.
	Sent uint64
	// Failed: given up on, after MaxAttempts tries or a final answer (4xx
	// other than 429, 3xx, a Retry-After beyond MaxBackoff).
	Failed uint64
	// Dropped: the queue was full when Notify was called.
	Dropped uint64
	// Lost: never delivered because the Webhook stopped: queued when Run
	// returned, in flight or waiting to retry when its context ended, or
	// passed to Notify afterwards.
	Lost uint64
	// Retried counts retries (attempts after a notification's first), not
	// notifications.
	Retried uint64
	// Queued is how many notifications wait for a worker now.
	Queued int
}

// Webhook is a Notifier that POSTs each notification as signed JSON to a
// URL (see the package documentation for the request and how to verify
// it). Notify queues; Run's workers deliver, retrying 429, 5xx and network
// errors with exponential backoff.
//
// Queued notifications are lost when Run returns (push is best-effort;
// messages are safe in the database and reach devices by sync), and so are
// the ones in flight: Run's context cancels their requests.
type Webhook struct {
	cfg         WebhookConfig
	log         *slog.Logger
	client      *http.Client
	ownClient   bool
	queue       chan job
	started     atomic.Bool
	stopped     atomic.Bool
	sent        atomic.Uint64
	failed      atomic.Uint64
	dropped     atomic.Uint64
	lost        atomic.Uint64
	retried     atomic.Uint64
	dropLog     rateLimit
	failLog     rateLimit
	wg          sync.WaitGroup
	sleep       func(ctx context.Context, d time.Duration) error // replaced in tests
	now         func() time.Time
	newDelivery func() string
}

type job struct {
	n Notification
}

// NewWebhook returns a Webhook for cfg that logs to log (nil: no logs).
// Nothing is sent until Run is called; Notify may be called before. It
// panics if cfg is invalid: check operator input with cfg.Validate first.
func NewWebhook(cfg WebhookConfig, log *slog.Logger) *Webhook {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{
		cfg:         cfg,
		log:         log,
		client:      cfg.Client,
		queue:       make(chan job, cfg.QueueSize),
		dropLog:     rateLimit{every: logEvery},
		failLog:     rateLimit{every: logEvery},
		sleep:       sleepCtx,
		now:         time.Now,
		newDelivery: newDeliveryID,
	}
	if w.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.Workers
		w.client = &http.Client{
			Transport: t,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
		w.ownClient = true
	}
	return w
}

// Notify queues n for delivery and returns at once. If the queue is full,
// n is dropped and counted (Stats.Dropped), with a warning at most every
// 10 s; after Run has returned, n is counted as Lost.
func (w *Webhook) Notify(n Notification) {
	if w.stopped.Load() {
		w.lost.Add(1)
		return
	}
	if n.Time.IsZero() {
		n.Time = w.now()
	}
	select {
	case w.queue <- job{n: n}:
	default:
		w.dropped.Add(1)
		if ok, suppressed := w.dropLog.allow(w.now()); ok {
			w.log.Warn("notify: webhook queue full, notification dropped",
				"user_id", n.UserID, "conversation_id", n.ConversationID, "message_id", n.MessageID,
				"queue_size", w.cfg.QueueSize, "dropped_total", w.dropped.Load(), "suppressed", suppressed)
		}
	}
}

// Stats returns a snapshot of the counters.
func (w *Webhook) Stats() Stats {
	return Stats{
		Sent:    w.sent.Load(),
		Failed:  w.failed.Load(),
		Dropped: w.dropped.Load(),
		Lost:    w.lost.Load(),
		Retried: w.retried.Load(),
		Queued:  len(w.queue),
	}
}

// Run delivers queued notifications with cfg.Workers workers until ctx is
// done, then cancels the requests in flight, waits for the workers and
// returns. What is still queued then is lost (counted in Stats.Lost), as is
// anything passed to Notify later. Call it once: a Webhook cannot be
// restarted.
func (w *Webhook) Run(ctx context.Context) {
	if !w.started.CompareAndSwap(false, true) {
		w.log.Error("notify: webhook Run called twice")
		return
	}
	for range w.cfg.Workers {
		w.wg.Go(func() { w.work(ctx) })
	}
	w.wg.Wait()
	w.stopped.Store(true)
	var lost uint64
drain:
	for {
		select {
		case <-w.queue:
			lost++
		default:
			break drain
		}
	}
	w.lost.Add(lost)
	if lost > 0 {
		w.log.Info("notify: webhook stopped; queued notifications discarded", "lost", lost)
	}
	if w.ownClient {
		w.client.CloseIdleConnections()
	}
}

func (w *Webhook) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-w.queue:
			w.deliver(ctx, j.n)
		}
	}
}

// outcome is what one attempt came to.
type outcome int

const (
	delivered outcome = iota
	retry             // 429, 5xx, network error or attempt timeout
	final             // any other answer: give up
	shutdown          // Run's context ended
)

// deliver tries n until it is delivered, gives up or Run stops.
func (w *Webhook) deliver(ctx context.Context, n Notification) {
	if ctx.Err() != nil {
		w.lost.Add(1)
		return
	}
	body, err := json.Marshal(n)
	if err != nil { // only a Time outside years 0-9999
		w.failed.Add(1)
		w.log.Error("notify: cannot encode notification", "user_id", n.UserID, "message_id", n.MessageID, "err", err)
		return
	}
	id := w.newDelivery()
	for attempt := 1; ; attempt++ {
		res, status, retryAfter, detail := w.attempt(ctx, id, body)
		switch res {
		case delivered:
			w.sent.Add(1)
			w.log.Debug("notify: webhook delivered", "delivery_id", id, "user_id", n.UserID,
				"message_id", n.MessageID, "status", status, "attempts", attempt)
			return
		case shutdown:
			w.lost.Add(1)
			return
		case final:
			w.giveUp(n, id, attempt, status, detail)
			return
		}
		if attempt >= w.cfg.MaxAttempts {
			w.giveUp(n, id, attempt, status, detail)
			return
		}
		delay := w.backoff(attempt)
		if retryAfter > w.cfg.MaxBackoff {
			w.giveUp(n, id, attempt, status, fmt.Sprintf("Retry-After %v is beyond MaxBackoff %v; %s",
				retryAfter, w.cfg.MaxBackoff, detail))
			return
		}
		delay = max(delay, retryAfter)
		w.retried.Add(1)
		if err := w.sleep(ctx, delay); err != nil {
			w.lost.Add(1)
			return
		}
	}
}

func (w *Webhook) giveUp(n Notification, id string, attempts, status int, detail string) {
	w.failed.Add(1)
	if ok, suppressed := w.failLog.allow(w.now()); ok {
		w.log.Warn("notify: webhook delivery failed, notification given up",
			"delivery_id", id, "user_id", n.UserID, "message_id", n.MessageID,
			"attempts", attempts, "status", status, "detail", detail,
			"failed_total", w.failed.Load(), "suppressed", suppressed)
	}
}

// attempt makes one request. status is the HTTP status (0 for a network
// error); retryAfter the answer's Retry-After (0 if none); detail a short
// description for logs.
func (w *Webhook) attempt(ctx context.Context, id string, body []byte) (res outcome, status int, retryAfter time.Duration, detail string) {
	actx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil { // the URL was validated; nothing else can fail
		return final, 0, 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(DeliveryHeader, id)
	req.Header.Set(SignatureHeader, Sign(w.cfg.Secret, w.now(), body))
	resp, err := w.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return shutdown, 0, 0, ""
		}
		return retry, 0, 0, err.Error()
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	if status >= 200 && status < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return delivered, status, 0, ""
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, errSnippet))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	detail = resp.Status
	if s := strings.TrimSpace(string(snippet)); s != "" {
		detail += ": " + strings.ToValidUTF8(s, "\uFFFD")
	}
	if ctx.Err() != nil {
		return shutdown, status, 0, detail
	}
	if status == http.StatusTooManyRequests || status >= 500 {
		return retry, status, parseRetryAfter(resp.Header.Get("Retry-After"), w.now()), detail
	}
	return final, status, 0, detail
}

// backoff is the wait after the attempt-th attempt failed: InitialBackoff
// doubled attempt-1 times, capped at MaxBackoff, then jittered to between
// half of it and all of it.
func (w *Webhook) backoff(attempt int) time.Duration {
	d := w.cfg.InitialBackoff
	for i := 1; i < attempt && d < w.cfg.MaxBackoff; i++ {
		if d > w.cfg.MaxBackoff/2 {
			d = w.cfg.MaxBackoff
			break
		}
		d *= 2
	}
	d = min(d, w.cfg.MaxBackoff)
	half := d / 2
	return half + time.Duration(randv2.Int64N(int64(d-half)+1))
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date. It returns 0 for none or an unreadable one, and a huge value
// (which ends the attempts) for one too large to represent.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	secs, err := strconv.ParseUint(v, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange), err == nil && secs > uint64(math.MaxInt64/int64(time.Second)):
		return math.MaxInt64
	case err == nil:
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newDeliveryID returns a random (version 4) UUID.
func newDeliveryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// rateLimit lets one event through per interval and counts the rest; it
// takes no lock, so Notify can use it on the send path.
type rateLimit struct {
	every      time.Duration
	last       atomic.Int64 // UnixNano of the last event let through; 0: none
	suppressed atomic.Uint64
}

// allow reports whether an event at now may be logged, and how many were
// suppressed since the last one that was.
func (r *rateLimit) allow(now time.Time) (bool, uint64) {
	last := r.last.Load()
	t := now.UnixNano()
	if last != 0 && t-last < int64(r.every) {
		r.suppressed.Add(1)
		return false, 0
	}
	if !r.last.CompareAndSwap(last, t) {
		r.suppressed.Add(1)
		return false, 0
	}
	return true, r.suppressed.Swap(0)
}
