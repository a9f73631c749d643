package bench

import (
	"bytes"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// leanFrame is what a minimal client reads of a ConnectResponse, parsed
// from the wire without decoding it into generated messages, which would
// allocate a dozen objects per push. A stream reuses one for every frame.
//
// It reads what proto.Unmarshal would, but checks less: what it skips
// (the fields it does not read, other conversations' events) is not
// parsed, and no string is checked for valid UTF-8. Of a message field
// written more than once it reads the last occurrence, where proto merges
// them; servers write each once.
type leanFrame struct {
	conv []byte // the conversation whose events count

	hasFrame  bool // ConnectResponse.frame is set
	kind      frameKind
	heartbeat time.Duration // a welcome's heartbeat_interval
	reason    string        // a goaway's
	pushID    uint64
	events    []leanEvent // a push's events of conv, in order
	buf       []byte      // a frame split over several buffers, joined
}

type frameKind uint8

const (
	frameOther   frameKind = iota // no kind, or one a minimal client ignores
	frameWelcome                  // heartbeat is set
	framePush                     // pushID and events are
	frameGoaway                   // reason is
)

func (k frameKind) String() string {
	return [...]string{"other", "welcome", "push", "goaway"}[k]
}

// leanEvent is one event of the conversation: its seq, and for a bench
// message its send time and index (0 otherwise).
type leanEvent struct {
	seq         uint64
	sent, index int64
}

// protoField is a field as it appears on the wire.
type protoField struct {
	num protowire.Number
	typ protowire.Type
}

// fieldOf is field name of m, from the generated descriptor.
func fieldOf(m proto.Message, name string) protoField {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic(fmt.Sprintf("bench: %T has no field %s", m, name))
	}
	return protoField{fd.Number(), wireType(fd)}
}

func wireType(fd protoreflect.FieldDescriptor) protowire.Type {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.StringKind, protoreflect.BytesKind:
		return protowire.BytesType
	case protoreflect.Uint64Kind, protoreflect.Uint32Kind:
		return protowire.VarintType
	}
	panic(fmt.Sprintf("bench: the lean parser reads no %s field (%s)", fd.Kind(), fd.FullName()))
}

// oneofMembers is a oneof's fields as bits by field number: the last
// member on the wire is the one set.
type oneofMembers uint64

func oneofOf(m proto.Message, name string) oneofMembers {
	od := m.ProtoReflect().Descriptor().Oneofs().ByName(protoreflect.Name(name))
	if od == nil {
		panic(fmt.Sprintf("bench: %T has no oneof %s", m, name))
	}
	var set oneofMembers
	for i := range od.Fields().Len() {
		fd := od.Fields().Get(i)
		if fd.Number() >= 64 || wireType(fd) != protowire.BytesType {
			panic(fmt.Sprintf("bench: oneof member %s: want a message numbered below 64", fd.FullName()))
		}
		set |= 1 << fd.Number()
	}
	return set
}

// wire is the fields a minimal client reads.
var wire = struct {
	responseFrame                         protoField
	frameKinds                            oneofMembers
	frameWelcome, framePush, frameGoaway  protoField
	pushID, pushEvents                    protoField
	eventConv, eventSeq                   protoField
	eventKinds                            oneofMembers
	eventMessage, messageContent          protoField
	contentBodies                         oneofMembers
	contentCustom, customType, customData protoField
}{
	responseFrame:  fieldOf(&edgev1.ConnectResponse{}, "frame"),
	frameKinds:     oneofOf(&edgev1.ServerFrame{}, "kind"),
	frameWelcome:   fieldOf(&edgev1.ServerFrame{}, "welcome"),
	framePush:      fieldOf(&edgev1.ServerFrame{}, "push"),
	frameGoaway:    fieldOf(&edgev1.ServerFrame{}, "goaway"),
	pushID:         fieldOf(&edgev1.Push{}, "push_id"),
	pushEvents:     fieldOf(&edgev1.Push{}, "events"),
	eventConv:      fieldOf(&chatv1.Event{}, "conversation_id"),
	eventSeq:       fieldOf(&chatv1.Event{}, "seq"),
	eventKinds:     oneofOf(&chatv1.Event{}, "kind"),
	eventMessage:   fieldOf(&chatv1.Event{}, "message"),
	messageContent: fieldOf(&chatv1.Message{}, "content"),
	contentBodies:  oneofOf(&chatv1.MessageContent{}, "body"),
	contentCustom:  fieldOf(&chatv1.MessageContent{}, "custom"),
	customType:     fieldOf(&chatv1.Custom{}, "type"),
	customData:     fieldOf(&chatv1.Custom{}, "data"),
}

// wireReader walks the fields of one encoded message.
type wireReader struct {
	b   []byte
	err error
	// The current field, and its value for the varint and the
	// length-delimited wire types.
	protoField
	varint uint64
	bytes  []byte
}

// next moves to the next field; false at the end or on an error.
func (r *wireReader) next() bool {
	if len(r.b) == 0 || r.err != nil {
		return false
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n >= 0 {
		r.b = r.b[n:]
		r.protoField = protoField{num, typ}
		switch typ {
		case protowire.VarintType:
			r.varint, n = protowire.ConsumeVarint(r.b)
		case protowire.BytesType:
			r.bytes, n = protowire.ConsumeBytes(r.b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, r.b)
		}
	}
	if n < 0 {
		r.err = protowire.ParseError(n)
		return false
	}
	r.b = r.b[n:]
	return true
}

func (r *wireReader) at(f protoField) bool { return r.protoField == f }

// in says whether the field is a member of oneof o.
func (r *wireReader) in(o oneofMembers) bool {
	return r.typ == protowire.BytesType && r.num < 64 && o&(1<<r.num) != 0
}

// last is the value of the last occurrence of field f in message b, and
// whether there is one.
func last(b []byte, f protoField) ([]byte, bool, error) {
	var v []byte
	found := false
	r := wireReader{b: b}
	for r.next() {
		if r.at(f) {
			v, found = r.bytes, true
		}
	}
	return v, found, r.err
}

// parse reads the encoded ConnectResponse b into f, in place of the last
// frame.
func (f *leanFrame) parse(b []byte) error {
	f.reset()
	sf, ok, err := last(b, wire.responseFrame)
	if err != nil || !ok {
		return err
	}
	f.hasFrame = true
	var kind protoField
	var v []byte
	r := wireReader{b: sf}
	for r.next() {
		if r.in(wire.frameKinds) {
			kind, v = r.protoField, r.bytes
		}
	}
	if r.err != nil {
		return r.err
	}
	switch kind {
	case wire.framePush:
		f.kind = framePush
		return f.parsePush(v)
	case wire.frameWelcome:
		// Rare: the generated message will do.
		var w edgev1.Welcome
		if err := proto.Unmarshal(v, &w); err != nil {
			return err
		}
		f.kind, f.heartbeat = frameWelcome, w.GetHeartbeatInterval().AsDuration()
	case wire.frameGoaway:
		var g edgev1.Goaway
		if err := proto.Unmarshal(v, &g); err != nil {
			return err
		}
		f.kind, f.reason = frameGoaway, g.GetReason()
	}
	return nil
}

func (f *leanFrame) reset() {
	*f = leanFrame{conv: f.conv, events: f.events[:0], buf: f.buf}
}

func (f *leanFrame) parsePush(b []byte) error {
	r := wireReader{b: b}
	for r.next() {
		switch {
		case r.at(wire.pushID):
			f.pushID = r.varint
		case r.at(wire.pushEvents):
			if err := f.parseEvent(r.bytes); err != nil {
				return err
			}
		}
	}
	return r.err
}

// parseEvent appends event b if it is of f.conv.
func (f *leanFrame) parseEvent(b []byte) error {
	var conv, msg []byte
	var ev leanEvent
	isMessage := false
	r := wireReader{b: b}
	for r.next() {
		switch {
		case r.at(wire.eventConv):
			conv = r.bytes
		case r.at(wire.eventSeq):
			ev.seq = r.varint
		case r.in(wire.eventKinds):
			isMessage, msg = r.at(wire.eventMessage), r.bytes
		}
	}
	if r.err != nil || !bytes.Equal(conv, f.conv) {
		return r.err
	}
	if isMessage {
		var err error
		if ev.sent, ev.index, err = benchMessage(msg); err != nil {
			return err
		}
	}
	f.events = append(f.events, ev)
	return nil
}

// benchMessage is the send time and index of a bench message (0, 0 for
// any other content).
func benchMessage(msg []byte) (sent, index int64, err error) {
	content, _, err := last(msg, wire.messageContent)
	if err != nil {
		return 0, 0, err
	}
	var custom []byte
	isCustom := false
	r := wireReader{b: content}
	for r.next() {
		if r.in(wire.contentBodies) {
			isCustom, custom = r.at(wire.contentCustom), r.bytes
		}
	}
	if r.err != nil || !isCustom {
		return 0, 0, r.err
	}
	var typ, data []byte
	r = wireReader{b: custom}
	for r.next() {
		switch {
		case r.at(wire.customType):
			typ = r.bytes
		case r.at(wire.customData):
			data = r.bytes
		}
	}
	if r.err != nil || string(typ) != payloadType {
		return 0, 0, r.err
	}
	s, i, _ := decodePayload(data)
	return s, int64(i), nil
}
