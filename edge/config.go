package edge

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// ProtocolVersion is the session protocol this edge speaks (Hello and
// SubscribeRequest protocol_version).
const ProtocolVersion = 1

// Config tunes an Edge. Every zero field takes the default in its comment.
type Config struct {
	// EdgeID names this edge in its sessions' registry records (and Welcome).
	// Default: a random UUID, new at every start: a restarted edge holds none
	// of its old sessions.
	EdgeID string
	// HeartbeatInterval is how often clients are told (in Welcome) to send a
	// frame, a Ping if nothing else. Default 25 s.
	HeartbeatInterval time.Duration
	// SessionTimeout closes a session that sent nothing for this long.
	// Default 60 s.
	SessionTimeout time.Duration
	// HelloTimeout ends a stream that sends no Hello within it
	// (deadline_exceeded). Default 5 s.
	HelloTimeout time.Duration
	// MaxPendingHellos caps the streams of this edge that are not welcomed
	// yet (awaiting their Hello, or being opened); more are refused at once
	// with resource_exhausted. Default 1000.
	MaxPendingHellos int
	// MaxPendingHellosPerConn is the same cap per transport connection, so
	// one client's connection cannot take all of them. Default 100.
	MaxPendingHellosPerConn int
	// AckTimeout is how long a push may stay unacknowledged before it is
	// sent again with the same push_id. Default 10 s.
	AckTimeout time.Duration
	// MaxResends is how many times an unacknowledged push is resent; one
	// more AckTimeout after the last resend the session is closed
	// (deadline_exceeded), so the client reconnects and syncs. Default 3.
	MaxResends int
	// QueueLimit caps the pushes a session holds: queued for writing plus
	// written and not yet acknowledged (control frames count too). A
	// session passing it is closed as too slow (resource_exhausted).
	// Default 1024.
	QueueLimit int
	// MaxFrameBytes is the largest encoded ClientFrame accepted; larger
	// frames end the stream with resource_exhausted. Told to clients in
	// Welcome. Default 64 KiB.
	MaxFrameBytes int
	// RenewInterval is how often the edge renews the registry TTL of all of
	// its sessions, in one batched call. Default 20 s.
	RenewInterval time.Duration
	// CommandTimeout bounds every call the edge makes to a service: a
	// session's commands, registry calls, presence lookups and delivery
	// reports. Default 10 s.
	CommandTimeout time.Duration
	// DeliveryFlushInterval is how often acknowledged events are reported to
	// the DeliveryService; it happens sooner once 5000 are pending.
	// Default 1 s.
	DeliveryFlushInterval time.Duration
	// CloseTimeout is how long a closed session may take to write its last
	// frame (a Goaway) before its stream is reset, so a client that stopped
	// reading cannot hold a writer forever. Default 5 s.
	CloseTimeout time.Duration
	// WriteInterval is the least time between two writes of pushes to one
	// session while they keep coming: pushes that arrive meanwhile are
	// merged into the next frame. The first push after a quiet spell, and
	// answers and pongs, are written at once. It bounds writes (and the
	// client's reads) to one per interval per session in a busy group, at
	// the cost of up to this much latency. Default 50 ms; negative turns it
	// off.
	WriteInterval time.Duration
}

const (
	defaultHeartbeatInterval     = 25 * time.Second
	defaultSessionTimeout        = 60 * time.Second
	defaultAckTimeout            = 10 * time.Second
	defaultMaxResends            = 3
	defaultQueueLimit            = 1024
	defaultMaxFrameBytes         = 64 << 10
	defaultRenewInterval         = 20 * time.Second
	defaultCommandTimeout        = 10 * time.Second
	defaultDeliveryFlushInterval = time.Second
	defaultCloseTimeout          = 5 * time.Second
	// DefaultWriteInterval is Config.WriteInterval's default.
	DefaultWriteInterval = 50 * time.Millisecond
	// DefaultHelloTimeout is Config.HelloTimeout's default.
	DefaultHelloTimeout = 5 * time.Second
	// DefaultMaxPendingHellos is Config.MaxPendingHellos's default.
	DefaultMaxPendingHellos = 1000
	// DefaultMaxPendingHellosPerConn is Config.MaxPendingHellosPerConn's
	// default.
	DefaultMaxPendingHellosPerConn = 100
)

// withDefaults fills zero fields and rejects negative ones.
func (c Config) withDefaults() (Config, error) {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"HeartbeatInterval", &c.HeartbeatInterval, defaultHeartbeatInterval},
		{"SessionTimeout", &c.SessionTimeout, defaultSessionTimeout},
		{"HelloTimeout", &c.HelloTimeout, DefaultHelloTimeout},
		{"AckTimeout", &c.AckTimeout, defaultAckTimeout},
		{"RenewInterval", &c.RenewInterval, defaultRenewInterval},
		{"CommandTimeout", &c.CommandTimeout, defaultCommandTimeout},
		{"DeliveryFlushInterval", &c.DeliveryFlushInterval, defaultDeliveryFlushInterval},
		{"CloseTimeout", &c.CloseTimeout, defaultCloseTimeout},
	}
	switch {
	case c.WriteInterval == 0:
		c.WriteInterval = DefaultWriteInterval
	case c.WriteInterval < 0:
		c.WriteInterval = 0
	}
	var errs []error
	for _, d := range durations {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("%s is negative (%v)", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxResends", &c.MaxResends, defaultMaxResends},
		{"QueueLimit", &c.QueueLimit, defaultQueueLimit},
		{"MaxFrameBytes", &c.MaxFrameBytes, defaultMaxFrameBytes},
		{"MaxPendingHellos", &c.MaxPendingHellos, DefaultMaxPendingHellos},
		{"MaxPendingHellosPerConn", &c.MaxPendingHellosPerConn, DefaultMaxPendingHellosPerConn},
	}
	for _, n := range ints {
		switch {
		case *n.v < 0:
			errs = append(errs, fmt.Errorf("%s is negative (%d)", n.name, *n.v))
		case *n.v == 0:
			*n.v = n.def
		}
	}
	if c.EdgeID == "" {
		c.EdgeID = uuid.NewString()
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("edge: config: %w", err)
	}
	return c, nil
}

// sweepInterval is how often sessions are checked for silence and overdue
// acks: often enough that neither fires much later than configured.
func (c Config) sweepInterval() time.Duration {
	d := min(c.SessionTimeout, c.AckTimeout) / 4
	return max(min(d, time.Second), time.Millisecond)
}
