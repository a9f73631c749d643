package edge

import (
	"context"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// The session core talks to its stream through these interfaces only, so the
// RPC library carrying the stream (connect-go today, possibly grpc-go's own
// transport after measurement) is an adapter away.

// FrameSender is the server-to-client half of a session stream.
//
// Send is called from one goroutine at a time. Context is done when the
// client has gone away.
type FrameSender interface {
	Send(*edgev1.ServerFrame) error
	Context() context.Context
}

// FrameConn is a bidirectional session stream (EdgeService.Connect).
//
// Recv is called from one goroutine, concurrently with Send. It returns
// io.EOF (possibly wrapped) when the client closed its side cleanly, and
// must return an error once the serving call (Edge.Serve) has returned and
// the transport has torn the stream down. A nil frame is treated as an
// empty one.
type FrameConn interface {
	FrameSender
	Recv() (*edgev1.ClientFrame, error)
}

// Aborter is implemented by streams that can be reset from outside, making a
// Send blocked on a client that stopped reading return. The edge uses it
// when a closed session's writer has not finished within
// Config.CloseTimeout. Optional: without it, the serving call returns
// without waiting for such a writer, which suits transports that end a
// stream when its handler returns (grpc-go).
type Aborter interface {
	Abort()
}
