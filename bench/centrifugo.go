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
	"net"
	"net/http"
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
	var r centrifugoReply
	for {
		_, rd, err := c.conn.Reader(ctx)
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
			line = bytes.TrimSpace(line)
			if string(line) == "{}" { // a ping: answer with an empty command
				go func() { _ = c.conn.Write(ctx, websocket.MessageText, []byte("{}")) }()
				continue
			}
			r = centrifugoReply{}
			if json.Unmarshal(line, &r) != nil || r.Push == nil {
				continue
			}
			if d := r.Push.Disconnect; d != nil {
				c.endCode.CompareAndSwap(nil, fmt.Sprintf("disconnect %d: %s", d.Code, d.Reason))
			}
			if p := r.Push.Pub; p != nil && r.Push.Channel == c.channel {
				c.tally.add(c.win, now, uint64(p.Data.I), p.Data.T, p.Data.I)
			}
		}
		c.tally.mu.Unlock()
	}
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
