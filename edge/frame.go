package edge

import (
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// Pushes are encoded once per edge, not once per session: a bus message
// becomes one encoded Push (without push_id) shared by every session it
// goes to, and a session's frame is assembled from such parts. Protobuf
// messages concatenate on the wire (repeated fields append), so a Push
// with a push_id and the events of several parts is the push_id field
// followed by the parts' bytes.
//
// The assembled bytes travel as a ServerFrame whose only content is
// unknown fields: proto marshalling writes unknown fields verbatim, so the
// frame goes through any binary protobuf codec unchanged, and the client
// decodes an ordinary Push. JSON codecs cannot carry unknown fields; the
// connect adapter decodes such frames for JSON clients (materialize).

var (
	serverFramePush = fieldNumber((&edgev1.ServerFrame{}).ProtoReflect().Descriptor(), "push")
	pushID          = fieldNumber((&edgev1.Push{}).ProtoReflect().Descriptor(), "push_id")
)

func fieldNumber(md protoreflect.MessageDescriptor, name protoreflect.Name) protowire.Number {
	return md.Fields().ByName(name).Number()
}

// pendingPush is a push from the bus, encoded once and shared by every
// session it is routed to: read-only.
type pendingPush struct {
	body    []byte // an encoded Push without push_id
	durable bool   // carries state that must be acknowledged
	// conv and seq name the highest conversation event it carries, for
	// delivery reports; empty for other pushes.
	conv string
	seq  uint64
}

// newPendingPush encodes p once for all its sessions.
func newPendingPush(p *edgev1.Push) (pendingPush, error) {
	body, err := proto.Marshal(p)
	if err != nil {
		return pendingPush{}, err
	}
	pp := pendingPush{body: body, durable: isDurable(p)}
	for _, ev := range p.GetEvents() {
		if ev.GetSeq() >= pp.seq {
			pp.conv, pp.seq = ev.GetConversationId(), ev.GetSeq()
		}
	}
	return pp, nil
}

// isDurable reports whether p carries state the client must acknowledge.
func isDurable(p *edgev1.Push) bool {
	return len(p.GetEvents()) > 0 || len(p.GetUserEvents()) > 0 ||
		len(p.GetReadMarkers()) > 0 || len(p.GetUnread()) > 0
}

// frameBuf assembles push frames; framePool keeps them, since every write
// needs one only until Send returns.
type frameBuf struct {
	frame edgev1.ServerFrame
	buf   []byte
}

var framePool = sync.Pool{New: func() any { return new(frameBuf) }}

// assemble builds ServerFrame{push: Push{push_id: id, <parts>}} in b; id 0
// is left out, as proto3 does. The frame is b's until b is reused.
func (b *frameBuf) assemble(id uint64, parts []pendingPush) *edgev1.ServerFrame {
	n := 0
	if id != 0 {
		n += protowire.SizeTag(pushID) + protowire.SizeVarint(id)
	}
	for _, p := range parts {
		n += len(p.body)
	}
	buf := b.buf[:0]
	buf = protowire.AppendTag(buf, serverFramePush, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(n))
	if id != 0 {
		buf = protowire.AppendTag(buf, pushID, protowire.VarintType)
		buf = protowire.AppendVarint(buf, id)
	}
	for _, p := range parts {
		buf = append(buf, p.body...)
	}
	// A huge backlog frame is not kept for everyone after it.
	if cap(buf) <= maxPooledFrame {
		b.buf = buf
	}
	b.frame.ProtoReflect().SetUnknown(buf)
	return &b.frame
}

// maxPooledFrame bounds the buffers the pool keeps.
const maxPooledFrame = 64 << 10

// materialize returns f decoded into fields, for codecs that cannot write
// unknown fields (JSON). Frames built as usual come back unchanged.
func materialize(f *edgev1.ServerFrame) (*edgev1.ServerFrame, error) {
	raw := f.ProtoReflect().GetUnknown()
	if len(raw) == 0 {
		return f, nil
	}
	out := &edgev1.ServerFrame{}
	if err := proto.Unmarshal(raw, out); err != nil {
		return nil, err
	}
	return out, nil
}
