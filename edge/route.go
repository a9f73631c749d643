package edge

import (
	"errors"
	"slices"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
)

var errDeviceLoggedOut = errors.New("device logged out")

// route handles one bus payload, an Envelope for this edge's sessions. It
// runs on the bus's delivery goroutine, so it only decodes and enqueues.
func (e *Edge) route(payload []byte) {
	env := &busv1.Envelope{}
	if err := proto.Unmarshal(payload, env); err != nil {
		e.log.Warn("edge: undecodable bus envelope", "bytes", len(payload), "err", err)
		return
	}
	for _, d := range env.GetCloseDevices() {
		e.hub.forUser(d.GetUserId(), func(s *session) {
			if s.ident.DeviceID == d.GetDeviceId() {
				// Unauthenticated, not a plain end: the device must log in
				// again rather than reconnect with its old token.
				s.close(connect.NewError(connect.CodeUnauthenticated, errDeviceLoggedOut), "device logged out")
			}
		})
	}
	push := env.GetPush()
	if push == nil || len(env.GetUserIds()) == 0 {
		return
	}
	// Encoded size and kind once per envelope, not once per session.
	p := pendingPush{push: push, size: proto.Size(push), durable: isDurable(push)}
	exclude := env.GetExcludeSessionIds()
	for _, user := range env.GetUserIds() {
		e.hub.forUser(user, func(s *session) {
			if !slices.Contains(exclude, s.id) {
				s.enqueuePush(p)
			}
		})
	}
}
