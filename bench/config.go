// Package bench is Waggle's load generator: it registers users, gives them
// conversations of a chosen shape, holds their edge sessions with the Go
// SDK and sends at a paced rate, measuring acks, deliveries and
// end-to-end latency (send on one client to delivery on another). The
// waggle-bench command drives it; see docs/benchmarks.md.
package bench

import (
	"fmt"
	"log/slog"
	"time"
)

// Shape is how users are put into conversations.
type Shape string

const (
	// ShapeDirect pairs users in 1:1 conversations: 0 with 1, 2 with 3, ...
	ShapeDirect Shape = "direct"
	// ShapeGroups splits users into groups of GroupSize.
	ShapeGroups Shape = "groups"
	// ShapeLarge puts GroupSize users (default: all) in one group; the
	// others stay connected but receive nothing.
	ShapeLarge Shape = "large"
)

// Protocols the bench speaks to edges.
const (
	ProtocolConnect = "connect" // connect-go, Connect protocol over HTTP/2
	ProtocolGRPC    = "grpc"    // grpc-go's own transport
)

// Config is one run. Zero values take the defaults noted.
type Config struct {
	// Edges are the base URLs (http://host:port) of the edges that hold
	// the sessions; TCP connections are spread over them round robin.
	Edges []string
	// API is the URL of AccountService and ConversationService, used to
	// set up users and conversations. Default: Edges[0], which serves them
	// when it runs every role.
	API string
	// Protocol is ProtocolConnect (default) or ProtocolGRPC.
	Protocol string
	// Users to register. Required.
	Users int
	// ConnsPerUser is how many sessions each user holds (devices). Default 1.
	ConnsPerUser int
	// StreamsPerConn is how many sessions share one TCP connection.
	// Default 1: one connection per session, as mobile devices have.
	StreamsPerConn int
	// Shape of the conversations. Default ShapeGroups.
	Shape Shape
	// GroupSize is the members per group (ShapeGroups, default 10) or of
	// the one group (ShapeLarge, default Users).
	GroupSize int
	// Rate is the total sends per second, spread over every member's
	// sessions round robin. Required.
	Rate float64
	// Duration is the measured window, after Warmup. Required.
	Duration time.Duration
	// Warmup is sending at Rate before measuring. Default 0.
	Warmup time.Duration
	// Drain is how long to wait after the last send for its deliveries.
	// Default 3 s.
	Drain time.Duration
	// PayloadBytes is the size of each message's Custom payload (at least
	// 12: the send time and the sender). Default 100.
	PayloadBytes int
	// SendTimeout bounds each send. Default 10 s.
	SendTimeout time.Duration
	// MaxInFlight bounds the sends awaiting their ack; beyond it, a send
	// due is skipped and counted as "local: in-flight limit". Default 10000.
	MaxInFlight int
	// RegisterParallel is how many registrations run at once. Default 4
	// (argon2id bounds the server at about one per core anyway).
	RegisterParallel int
	// ConnectParallel is how many sessions are opened at once. Default 100.
	ConnectParallel int
	// State is a file keeping the registered users between runs against
	// one server ("": register anew each run). A later run registers only
	// the users the file lacks and refreshes the others' tokens, which
	// costs no password hash; see setupUsers.
	State string
	// PIDs are server processes whose memory and CPU are reported.
	PIDs []int
	// Progress, if set, is called every second while sending.
	Progress func(Progress)
	Logger   *slog.Logger
}

// ConfigError is a Config that cannot run.
type ConfigError struct{ msg string }

func (e ConfigError) Error() string { return "bench: " + e.msg }

func configErrorf(format string, a ...any) error { return ConfigError{fmt.Sprintf(format, a...)} }

// transportDefaults checks the edges and the protocol and fills in the API
// (the first edge) and the protocol (Connect) when unset.
func transportDefaults(edges []string, api, protocol *string) error {
	if len(edges) == 0 {
		return configErrorf("at least one edge URL is required")
	}
	if *api == "" {
		*api = edges[0]
	}
	if *protocol == "" {
		*protocol = ProtocolConnect
	}
	if *protocol != ProtocolConnect && *protocol != ProtocolGRPC {
		return configErrorf("protocol %q: want connect or grpc", *protocol)
	}
	return nil
}

func (c *Config) setDefaults() error {
	if err := transportDefaults(c.Edges, &c.API, &c.Protocol); err != nil {
		return err
	}
	if c.ConnsPerUser == 0 {
		c.ConnsPerUser = 1
	}
	if c.StreamsPerConn == 0 {
		c.StreamsPerConn = 1
	}
	if c.Shape == "" {
		c.Shape = ShapeGroups
	}
	if c.GroupSize == 0 {
		c.GroupSize = 10
		if c.Shape == ShapeLarge {
			c.GroupSize = c.Users
		}
	}
	if c.Drain == 0 {
		c.Drain = 3 * time.Second
	}
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 100
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 10 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 10000
	}
	if c.RegisterParallel == 0 {
		c.RegisterParallel = 4
	}
	if c.ConnectParallel == 0 {
		c.ConnectParallel = 100
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Users < 2:
		return configErrorf("at least 2 users are needed")
	case c.ConnsPerUser < 0 || c.StreamsPerConn < 0:
		return configErrorf("connections per user and streams per connection must be positive")
	case c.Rate <= 0:
		return configErrorf("the send rate must be positive")
	case c.Duration <= 0 || c.Warmup < 0:
		return configErrorf("the duration must be positive and the warmup not negative")
	case c.PayloadBytes < payloadHeader:
		return configErrorf("the payload must be at least %d bytes", payloadHeader)
	}
	return nil
}

// plan assigns users (0..users-1) to conversations; each conversation is
// its members, the first of whom creates it.
func plan(shape Shape, users, groupSize int) ([][]int, error) {
	span := func(from, to int) []int {
		s := make([]int, 0, to-from)
		for u := from; u < to; u++ {
			s = append(s, u)
		}
		return s
	}
	switch shape {
	case ShapeDirect:
		if users%2 != 0 {
			return nil, configErrorf("direct pairs users: %d is odd", users)
		}
		var convs [][]int
		for u := 0; u < users; u += 2 {
			convs = append(convs, []int{u, u + 1})
		}
		return convs, nil
	case ShapeGroups:
		if groupSize < 2 || groupSize > users {
			return nil, configErrorf("group size %d: want 2 to %d (the users)", groupSize, users)
		}
		var convs [][]int
		for u := 0; u < users; u += groupSize {
			convs = append(convs, span(u, min(u+groupSize, users)))
		}
		if last := convs[len(convs)-1]; len(last) == 1 && len(convs) > 1 {
			// A group of one has nobody to deliver to: join the previous.
			convs = convs[:len(convs)-1]
			convs[len(convs)-1] = append(convs[len(convs)-1], last[0])
		}
		return convs, nil
	case ShapeLarge:
		if groupSize < 2 || groupSize > users {
			return nil, configErrorf("group size %d: want 2 to %d (the users)", groupSize, users)
		}
		return [][]int{span(0, groupSize)}, nil
	}
	return nil, configErrorf("shape %q: want direct, groups or large", shape)
}
