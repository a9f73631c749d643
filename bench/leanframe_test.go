package bench

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

const leanConv = "00000000-0000-4000-8000-00000000f100"

// decodeFrame is what the minimal client read of a frame before the lean
// parser, through the generated messages.
func decodeFrame(b []byte, conv string) (leanFrame, error) {
	var res edgev1.ConnectResponse
	if err := proto.Unmarshal(b, &res); err != nil {
		return leanFrame{}, err
	}
	f := res.GetFrame()
	if f == nil {
		return leanFrame{}, nil
	}
	out := leanFrame{hasFrame: true}
	switch k := f.GetKind().(type) {
	case *edgev1.ServerFrame_Welcome:
		out.kind, out.heartbeat = frameWelcome, k.Welcome.GetHeartbeatInterval().AsDuration()
	case *edgev1.ServerFrame_Goaway:
		out.kind, out.reason = frameGoaway, k.Goaway.GetReason()
	case *edgev1.ServerFrame_Push:
		out.kind, out.pushID = framePush, k.Push.GetPushId()
		for _, ev := range k.Push.GetEvents() {
			if ev.GetConversationId() != conv {
				continue
			}
			var sent int64
			var index int
			if cu := ev.GetMessage().GetContent().GetCustom(); cu.GetType() == payloadType {
				sent, index, _ = decodePayload(cu.GetData())
			}
			out.events = append(out.events, leanEvent{seq: ev.GetSeq(), sent: sent, index: int64(index)})
		}
	}
	return out, nil
}

// leanParse is what the lean parser reads of b.
func leanParse(b []byte, conv string) (leanFrame, error) {
	f := leanFrame{conv: []byte(conv)}
	err := f.parse(b)
	f.conv, f.buf = nil, nil
	if len(f.events) == 0 {
		f.events = nil
	}
	return f, err
}

func response(f *edgev1.ServerFrame) []byte {
	b, err := proto.Marshal(&edgev1.ConnectResponse{Frame: f})
	if err != nil {
		panic(err)
	}
	return b
}

func pushFrame(id uint64, events ...*chatv1.Event) *edgev1.ServerFrame {
	return &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Push{Push: &edgev1.Push{PushId: id, Events: events}}}
}

func messageEvent(conv string, seq uint64, content *chatv1.MessageContent) *chatv1.Event {
	return &chatv1.Event{ConversationId: conv, Seq: seq, ActorUserId: "u1", Kind: &chatv1.Event_Message{Message: &chatv1.Message{
		MessageId: "m", ConversationId: conv, Seq: seq, SenderUserId: "u1", ClientMsgId: "c", Content: content}}}
}

func custom(typ string, data []byte) *chatv1.MessageContent {
	return &chatv1.MessageContent{Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{Type: typ, Data: data}}}
}

func benchEvent(seq uint64, sent time.Time, index int) *chatv1.Event {
	return messageEvent(leanConv, seq, custom(payloadType, encodePayload(sent, index, 200)))
}

// withUnknown adds unknown fields to m: one of a number m does not use,
// and one of a number it uses, with another wire type.
func withUnknown[M proto.Message](m M) M {
	var b []byte
	b = protowire.AppendTag(b, 900, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("unknown"))
	b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 7)
	m.ProtoReflect().SetUnknown(b)
	return m
}

// leanFrames are encoded responses of every sort the parser meets.
func leanFrames() map[string][]byte {
	at := time.Unix(1_800_000_000, 123)
	text := &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: "hi"}}}
	members := &chatv1.Event{ConversationId: leanConv, Seq: 9, Kind: &chatv1.Event_MembersAdded{MembersAdded: &chatv1.MembersAdded{}}}
	unknownEvent := withUnknown(benchEvent(12, at, 5))
	withUnknown(unknownEvent.GetMessage())
	withUnknown(unknownEvent.GetMessage().GetContent())
	withUnknown(unknownEvent.GetMessage().GetContent().GetCustom())
	unknownPush := pushFrame(8, unknownEvent)
	withUnknown(unknownPush.GetPush())
	withUnknown(unknownPush)
	frames := map[string][]byte{
		"several events": response(pushFrame(3, benchEvent(1, at, 0), benchEvent(2, at.Add(time.Millisecond), 1), benchEvent(3, at, 2))),
		"other conversations": response(pushFrame(4, messageEvent("other", 1, custom(payloadType, encodePayload(at, 9, 20))),
			benchEvent(5, at, 3), messageEvent(leanConv[:len(leanConv)-1], 2, nil), messageEvent(leanConv+"0", 3, nil))),
		"non-bench content": response(pushFrame(5, messageEvent(leanConv, 6, text), messageEvent(leanConv, 7, custom("image", encodePayload(at, 1, 20))),
			messageEvent(leanConv, 8, custom(payloadType, []byte("short"))), members, messageEvent(leanConv, 10, nil),
			messageEvent(leanConv, 11, &chatv1.MessageContent{}))),
		"push_id 0":             response(pushFrame(0, benchEvent(4, at, 4))),
		"no events":             response(pushFrame(6)),
		"empty push":            response(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Push{Push: &edgev1.Push{}}}),
		"unknown fields":        response(unknownPush),
		"welcome":               response(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Welcome{Welcome: &edgev1.Welcome{SessionId: "s", HeartbeatInterval: durationpb.New(25 * time.Second), UserId: "u"}}}),
		"welcome, no heartbeat": response(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Welcome{Welcome: &edgev1.Welcome{}}}),
		"goaway":                response(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Goaway{Goaway: &edgev1.Goaway{Reason: "draining"}}}),
		"pong":                  response(&edgev1.ServerFrame{Id: 3, Kind: &edgev1.ServerFrame_Pong{Pong: &edgev1.Pong{}}}),
		"error":                 response(&edgev1.ServerFrame{Id: 4, Kind: &edgev1.ServerFrame_Error{Error: &edgev1.Error{Code: "x"}}}),
		"frame, no kind":        response(&edgev1.ServerFrame{Id: 5}),
		"no frame":              response(nil),
		"nothing":               {},
		"unknown response": func() []byte {
			b, _ := proto.Marshal(withUnknown(&edgev1.ConnectResponse{Frame: pushFrame(2, benchEvent(3, at, 4))}))
			return b
		}(),
	}
	// Not as proto.Marshal writes them, as proto.Unmarshal reads them: the
	// last member of a oneof wins, and a scalar keeps its last value.
	marshal := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	push := marshal(pushFrame(7, benchEvent(1, at, 1)))
	goaway := marshal(&edgev1.ServerFrame{Kind: &edgev1.ServerFrame_Goaway{Goaway: &edgev1.Goaway{Reason: "r"}}})
	frames["push, then goaway in one frame"] = rawField(wire.responseFrame, append(push, goaway...))
	frames["goaway, then push in one frame"] = rawField(wire.responseFrame, append(goaway, push...))
	twoEvents := func(a, b *chatv1.Event) []byte {
		p := append(marshal(&edgev1.Push{PushId: 9}), rawField(wire.pushEvents, append(marshal(a), marshal(b)...))...)
		return rawField(wire.responseFrame, rawField(wire.framePush, p))
	}
	frames["conversation and seq twice in one event"] = twoEvents(messageEvent("other", 2, nil), benchEvent(1, at, 1))
	frames["message, then members in one event"] = twoEvents(benchEvent(1, at, 1), members)
	return frames
}

// rawField is field f with the value b as it is.
func rawField(f protoField, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, f.num, f.typ), b)
}

func TestLeanFrameReadsWhatTheGeneratedMessagesDid(t *testing.T) {
	for name, b := range leanFrames() {
		t.Run(name, func(t *testing.T) {
			want, werr := decodeFrame(b, leanConv)
			got, err := leanParse(b, leanConv)
			if err != nil || werr != nil {
				t.Fatalf("lean: %v; generated: %v", err, werr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("lean parser:\n%+v\ngenerated messages:\n%+v", got, want)
			}
		})
	}
}

func TestLeanFrameTruncated(t *testing.T) {
	b := leanFrames()["several events"]
	for n := range len(b) {
		want, werr := decodeFrame(b[:n], leanConv)
		got, err := leanParse(b[:n], leanConv)
		if (err != nil) != (werr != nil) || err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%d of %d bytes: lean %+v, %v; generated %+v, %v", n, len(b), got, err, want, werr)
		}
	}
}

func TestLeanFrameReusesItsEvents(t *testing.T) {
	frames := leanFrames()
	f := leanFrame{conv: []byte(leanConv)}
	if err := f.parse(frames["several events"]); err != nil || len(f.events) != 3 {
		t.Fatalf("%+v, %v", f, err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := f.parse(frames["unknown fields"]); err != nil || len(f.events) != 1 || f.pushID != 8 {
			t.Fatalf("%+v, %v", f, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per push", allocs)
	}
	if err := f.parse(frames["goaway"]); err != nil || f.kind != frameGoaway || len(f.events) != 0 || f.pushID != 0 {
		t.Fatalf("after a goaway: %+v, %v", f, err)
	}
}

// FuzzLeanFrame feeds the lean parser any bytes: it must not fail where
// proto.Unmarshal succeeds, and on what a server writes (proto.Marshal of
// what proto.Unmarshal read) it must read what the generated messages did.
func FuzzLeanFrame(f *testing.F) {
	for _, b := range leanFrames() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := leanParse(b, leanConv)
		var res edgev1.ConnectResponse
		if proto.Unmarshal(b, &res) != nil {
			return
		}
		if err != nil {
			t.Fatalf("lean parser: %v; proto.Unmarshal succeeded", err)
		}
		canon, err := proto.MarshalOptions{Deterministic: true}.Marshal(&res)
		if err != nil {
			t.Fatal(err)
		}
		want, werr := decodeFrame(canon, leanConv)
		got, err := leanParse(canon, leanConv)
		if err != nil || werr != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("lean parser: %+v, %v\ngenerated messages: %+v, %v", got, err, want, werr)
		}
	})
}
