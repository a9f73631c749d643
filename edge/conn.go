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
// client has gone away. Abort makes a Send blocked on a client that
// stopped reading return (and fail every later one): the edge calls it
// when a closed session's writer has not finished within
// Config.CloseTimeout.
type FrameSender interface {
	Send(*edgev1.ServerFrame) error
	Context() context.Context
	Abort()
}

// FrameConn is a bidirectional session stream (EdgeService.Connect).
//
// Recv is called from one goroutine, concurrently with Send. It returns
// io.EOF (possibly wrapped) when the client closed its side cleanly. A nil
// frame is treated as an empty one. InterruptRecv makes a blocked Recv,
// and every later one, return an error without ending the stream for
// writing, so the serving call, which reads, can return once a session
// closed: that way a session needs no goroutine of its own for reading.
type FrameConn interface {
	FrameSender
	Recv() (*edgev1.ClientFrame, error)
	InterruptRecv()
}

// resettingConn is a FrameConn whose InterruptRecv resets the stream, so
// that the client sees canceled instead of the serving call's error
// (grpc-go can stop a blocked read no other way). Its Hello is read on a
// goroutine instead: the serving call returns the deadline's error, which
// ends the stream, and that ends the read.
type resettingConn interface {
	FrameConn
	interruptResets()
}
