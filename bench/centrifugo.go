package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Centrifugo (github.com/centrifugal/centrifugo, v6) as a fanout target:
// the memory engine, HS256 connection tokens, one channel that clients may
// subscribe to, and the HTTP API for publishing. CentrifugoDefaults are
// what CentrifugoConfig writes and the bench uses unless told otherwise.
var CentrifugoDefaults = CentrifugoAuth{
	Secret:  "waggle-bench-centrifugo-hmac-secret",
	APIKey:  "waggle-bench-centrifugo-api-key",
	Channel: "bench",
}

// CentrifugoAuth is what the bench and the server must agree on.
type CentrifugoAuth struct {
	Secret  string `json:"secret"`  // client.token.hmac_secret_key
	APIKey  string `json:"api_key"` // http_api.key
	Channel string `json:"channel"`
}

// CentrifugoConfig is a Centrifugo v6 configuration file for a fanout run
// on addr (host:port): every key the run depends on is set, so nothing is
// left to a default that could change between versions. Usage statistics
// are off: the run must not talk to anything but 127.0.0.1.
func CentrifugoConfig(addr string, auth CentrifugoAuth) ([]byte, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("centrifugo address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("centrifugo port %q: %w", port, err)
	}
	type obj = map[string]any
	cfg := obj{
		"http_server": obj{"address": host, "port": p},
		"log":         obj{"level": "warn"},
		"engine":      obj{"type": "memory"},
		"client": obj{
			"token": obj{"hmac_secret_key": auth.Secret},
			// The bench's WebSocket clients send no Origin header, which
			// Centrifugo accepts; browsers would need allowed_origins.
			"allowed_origins": []string{},
		},
		"channel": obj{"without_namespace": obj{
			"allow_subscribe_for_client": true,
			"history_size":               0,
			"presence":                   false,
			"join_leave":                 false,
		}},
		"http_api":    obj{"key": auth.APIKey},
		"admin":       obj{"enabled": false},
		"usage_stats": obj{"disabled": true},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// hs256 is a JSON Web Token signed with HMAC-SHA256, all Centrifugo's
// connection tokens need.
func hs256(secret string, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token claims: %w", err)
	}
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// centrifugoToken is member i's connection token, valid for a day.
func centrifugoToken(secret string, i int) (string, error) {
	return hs256(secret, struct {
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
	}{fmt.Sprintf("bench-%d", i), time.Now().Add(24 * time.Hour).Unix()})
}

// centrifugoData is a publication's data: the send time and the message's
// index, padded to the payload size.
type centrifugoData struct {
	T   int64  `json:"t"` // Unix ns
	I   int64  `json:"i"`
	Pad string `json:"p,omitempty"`
}

func encodeCentrifugoData(sent time.Time, i int64, size int) []byte {
	d := centrifugoData{T: sent.UnixNano(), I: i}
	b, _ := json.Marshal(d) // cannot fail
	if n := size - len(b) - len(`,"p":""`); n > 0 {
		d.Pad = strings.Repeat("x", n)
		b, _ = json.Marshal(d)
	}
	return b
}

// centrifugoClient is a minimal Centrifugo client over WebSocket with the
// JSON protocol: connect, subscribe, then it tallies publications by
// message index and answers the server's pings. Centrifugo needs no acks.
type centrifugoClient struct {
	conn    *websocket.Conn
	cancel  context.CancelFunc
	channel string
	tally   *tally
	win     *window
	done    chan struct{}
	closed  atomic.Bool
	endCode atomic.Value // string
}

// wsHTTP dials the WebSockets: an upgraded connection leaves the pool, so
// every client still gets a TCP connection of its own.
var wsHTTP = &http.Client{Transport: &http.Transport{}}

func dialCentrifugo(ctx context.Context, base, token, channel string, t *tally, w *window) (*centrifugoClient, error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/connection/websocket"
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: wsHTTP})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(1 << 20)
	c := &centrifugoClient{conn: conn, cancel: cancel, channel: channel, tally: t, win: w, done: make(chan struct{})}
	if err := c.call(ctx, fmt.Sprintf(`{"id":1,"connect":{"token":%q,"name":"waggle-bench"}}`, token), 1); err != nil {
		_ = conn.CloseNow()
		cancel()
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	if err := c.call(ctx, fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, channel), 2); err != nil {
		_ = conn.CloseNow()
		cancel()
		return nil, fmt.Errorf("subscribe on %s: %w", url, err)
	}
	go c.read(sctx)
	return c, nil
}

// centrifugoReply is the part of a Centrifugo reply (or push) the client
// reads.
type centrifugoReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data centrifugoData `json:"data"`
		} `json:"pub"`
		Disconnect *struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		} `json:"disconnect"`
	} `json:"push"`
}

// call sends one command and waits for the reply with its id, answering
// pings meanwhile.
func (c *centrifugoClient) call(ctx context.Context, cmd string, id uint32) error {
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		return err
	}
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			return err
		}
		for line := range bytes.Lines(b) {
			line = bytes.TrimSpace(line)
			if string(line) == "{}" {
				_ = c.conn.Write(ctx, websocket.MessageText, line)
				continue
			}
			var r centrifugoReply
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("reply %q: %w", line, err)
			}
			if r.ID != id {
				continue
			}
			if r.Error != nil {
				return fmt.Errorf("error %d: %s", r.Error.Code, r.Error.Message)
			}
			return nil
		}
	}
}

func (c *centrifugoClient) read(ctx context.Context) {
	defer close(c.done)
	var buf bytes.Buffer
	p := newCentrifugoParser(c.channel)
	for {
		// Reads take no deadline from ctx, which would cost coder/websocket
		// a context.AfterFunc per frame: close ends them by closing the
		// connection.
		_, rd, err := c.conn.Reader(context.Background())
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(rd)
		}
		if err != nil {
			if !c.closed.Load() {
				c.endCode.CompareAndSwap(nil, err.Error())
			}
			return
		}
		now := time.Now().UnixNano()
		c.tally.mu.Lock()
		for line := range bytes.Lines(buf.Bytes()) {
			l := p.parse(line)
			if l.ping { // answered with an empty command
				go func() { _ = c.conn.Write(ctx, websocket.MessageText, []byte("{}")) }()
			}
			if l.disconnect != "" {
				c.endCode.CompareAndSwap(nil, l.disconnect)
			}
			if l.pub {
				c.tally.add(c.win, now, uint64(l.index), l.sent, l.index)
			}
		}
		c.tally.mu.Unlock()
	}
}

// centrifugoLine is what a minimal client makes of one line (a reply or
// a push) from Centrifugo.
type centrifugoLine struct {
	ping        bool   // an empty reply
	disconnect  string // why a disconnect push ended the session ("": none)
	pub         bool   // a publication on the channel, with:
	sent, index int64  // its data's t and i
}

// centrifugoParser reads the lines of a subscribed client by byte scanning
// where they are as Centrifugo writes them: `{}` for a ping,
// `{"push":{"channel":C,"pub":{"data":D}}}` with D as encodeCentrifugoData
// writes it. Anything else goes to encoding/json, so every line reads as
// it would through it.
type centrifugoParser struct {
	channel string
	prefix  []byte // a publication's line up to its data
	reply   centrifugoReply
}

func newCentrifugoParser(channel string) *centrifugoParser {
	ch, _ := json.Marshal(channel) // cannot fail
	return &centrifugoParser{channel: channel, prefix: fmt.Appendf(nil, `{"push":{"channel":%s,"pub":{"data":`, ch)}
}

func (p *centrifugoParser) parse(line []byte) centrifugoLine {
	line = bytes.TrimSpace(line)
	if string(line) == "{}" {
		return centrifugoLine{ping: true}
	}
	if d, ok := bytes.CutPrefix(line, p.prefix); ok {
		if sent, index, ok := benchData(d); ok {
			return centrifugoLine{pub: true, sent: sent, index: index}
		}
	}
	return p.parseJSON(line)
}

// parseJSON reads any line.
func (p *centrifugoParser) parseJSON(line []byte) centrifugoLine {
	r := &p.reply
	*r = centrifugoReply{}
	if json.Unmarshal(line, r) != nil || r.Push == nil {
		return centrifugoLine{}
	}
	var l centrifugoLine
	if d := r.Push.Disconnect; d != nil {
		l.disconnect = fmt.Sprintf("disconnect %d: %s", d.Code, d.Reason)
	}
	if pub := r.Push.Pub; pub != nil && r.Push.Channel == p.channel {
		l.pub, l.sent, l.index = true, pub.Data.T, pub.Data.I
	}
	return l
}

// benchData reads `{"t":T,"i":I}` or `{"t":T,"i":I,"p":"P"}`, as
// encodeCentrifugoData writes it, and the closing braces of the
// publication, the push and the reply, which must end the line. ok is
// false for anything else, a pad with escapes included.
func benchData(b []byte) (sent, index int64, ok bool) {
	if b, ok = bytes.CutPrefix(b, []byte(`{"t":`)); !ok {
		return 0, 0, false
	}
	if sent, b, ok = jsonInt(b); !ok {
		return 0, 0, false
	}
	if b, ok = bytes.CutPrefix(b, []byte(`,"i":`)); !ok {
		return 0, 0, false
	}
	if index, b, ok = jsonInt(b); !ok {
		return 0, 0, false
	}
	if pad, found := bytes.CutPrefix(b, []byte(`,"p":"`)); found {
		end := bytes.IndexByte(pad, '"')
		if end < 0 || slices.ContainsFunc(pad[:end], func(c byte) bool { return c == '\\' || c < 0x20 }) {
			return 0, 0, false
		}
		b = pad[end+1:]
	}
	return sent, index, string(b) == "}}}}"
}

// jsonInt reads the integer b starts with as encoding/json reads it into
// an int64 (no leading zeros, in range); the caller checks that what
// follows ends it.
func jsonInt(b []byte) (int64, []byte, bool) {
	digits := b
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		digits = b[1:]
	}
	n := 0
	for n < len(digits) && '0' <= digits[n] && digits[n] <= '9' {
		n++
	}
	if n == 0 || n > 19 || digits[0] == '0' && n > 1 {
		return 0, b, false
	}
	var u uint64 // 19 digits fit
	for _, c := range digits[:n] {
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), digits[n:], true // -(1<<63) wraps to itself
	case !neg && u <= math.MaxInt64:
		return int64(u), digits[n:], true
	}
	return 0, b, false
}

func (c *centrifugoClient) lost() string {
	s, _ := c.endCode.Load().(string)
	return s
}

func (c *centrifugoClient) close() {
	c.closed.Store(true)
	_ = c.conn.Close(websocket.StatusNormalClosure, "")
	c.cancel()
	<-c.done
}

// centrifugoPublisher sends bench messages through Centrifugo's HTTP API.
type centrifugoPublisher struct {
	url     string // .../api/publish
	key     string
	channel string
	size    int
	hc      *http.Client
}

func newCentrifugoPublisher(api string, auth CentrifugoAuth, size int) *centrifugoPublisher {
	return &centrifugoPublisher{url: strings.TrimSuffix(api, "/") + "/api/publish", key: auth.APIKey, channel: auth.Channel, size: size,
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}}
}

func (p *centrifugoPublisher) send(ctx context.Context, i int64, sent time.Time) error {
	body := fmt.Appendf(nil, `{"channel":%q,"data":%s}`, p.channel, encodeCentrifugoData(sent, i, p.size))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", p.key)
	res, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: HTTP %d: %s", res.StatusCode, bytes.TrimSpace(b))
	}
	var r struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("publish: answer %q: %w", b, err)
	}
	if r.Error != nil {
		return fmt.Errorf("publish: error %d: %s", r.Error.Code, r.Error.Message)
	}
	return nil
}

func (p *centrifugoPublisher) close() { p.hc.CloseIdleConnections() }
