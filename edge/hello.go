package edge

import (
	"context"
	"errors"
	"sync"
)

// helloGate bounds the streams that have not been welcomed yet, per
// process and per transport connection. Such a stream costs its client one
// HEADERS frame and the edge a goroutine and transport buffers until its
// Hello deadline; an HTTP/2 connection carries up to 10,000 of them, so
// without a bound a handful of connections hold the edge's memory.
type helloGate struct {
	maxTotal, maxPerConn int

	mu      sync.Mutex
	total   int
	perConn map[string]int
}

func newHelloGate(maxTotal, maxPerConn int) *helloGate {
	return &helloGate{maxTotal: maxTotal, maxPerConn: maxPerConn, perConn: map[string]int{}}
}

// enter takes a slot for a stream on conn ("" for a transport that names
// none: only the process bound applies) and returns its release, or
// refuses at once with resource_exhausted: a refused client retries with
// backoff rather than queueing on the edge.
func (g *helloGate) enter(conn string) (release func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.maxTotal:
		return nil, newError(CodeResourceExhausted, errors.New("too many streams awaiting hello on this edge: retry later"))
	case conn != "" && g.perConn[conn] >= g.maxPerConn:
		return nil, newError(CodeResourceExhausted, errors.New("too many streams awaiting hello on this connection: retry later"))
	}
	g.total++
	if conn != "" {
		g.perConn[conn]++
	}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.total--
		if conn == "" {
			return
		}
		if g.perConn[conn]--; g.perConn[conn] == 0 {
			delete(g.perConn, conn)
		}
	}, nil
}

// connIDKey holds the transport connection a stream arrived on (its local
// and remote address), set by the transport adapters.
type connIDKey struct{}

func withConnID(ctx context.Context, local, remote string) context.Context {
	return context.WithValue(ctx, connIDKey{}, local+"<"+remote)
}

func connID(ctx context.Context) string {
	id, _ := ctx.Value(connIDKey{}).(string)
	return id
}
