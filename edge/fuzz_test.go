package edge

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// FuzzClientFrame decodes arbitrary bytes as a ClientFrame (bytes that do
// not decode never reach a session: the transport ends the stream with
// invalid_argument) and feeds it to a session, first as its opening frame,
// then after a valid Hello. The session must not panic, and must either
// answer a Ping sent after the frame or end with an error.
//
//	go test ./edge -run '^$' -fuzz FuzzClientFrame -fuzztime 30s
func FuzzClientFrame(f *testing.F) {
	for _, seed := range []*edgev1.ClientFrame{
		hello(1, "tok:u1:d1"),
		hello(2, "tok:u1:d1"),
		{Id: 1, Kind: &edgev1.ClientFrame_Ping{Ping: &edgev1.Ping{}}},
		{Kind: &edgev1.ClientFrame_Ack{Ack: &edgev1.Ack{PushId: math.MaxUint64}}},
		{Id: 2, Kind: &edgev1.ClientFrame_SendMessage{SendMessage: &chatv1.SendMessageRequest{ConversationId: "missing"}}},
		{Id: 3, Kind: &edgev1.ClientFrame_Sync{Sync: &chatv1.SyncRequest{Cursor: "broken"}}},
		{Id: 4, Kind: &edgev1.ClientFrame_PresenceSubscription{PresenceSubscription: &edgev1.PresenceSubscription{AddUserIds: []string{"a", "b"}, RemoveUserIds: []string{"a"}}}},
		{Id: 5, Kind: &edgev1.ClientFrame_RecallMessage{}},
		{Id: 6},
		{},
	} {
		b, err := proto.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x05, 0x9a, 0x06, 0x00}) // a kind from a newer protocol

	cfg := testConfig()
	cfg.CommandTimeout = 50 * time.Millisecond // "block" conversations must not stall the fuzzer
	te := newTestEdge(f, cfg)

	f.Fuzz(func(t *testing.T, data []byte) {
		frame := &edgev1.ClientFrame{}
		if err := proto.Unmarshal(data, frame); err != nil {
			return
		}

		// As the opening frame: a Welcome, or the stream ends with an error.
		c := te.dial(t, 256)
		c.send(frame)
		select {
		case f := <-c.conn.out:
			if f.GetWelcome() == nil {
				t.Fatalf("answered opening frame %v with %v", frame, f)
			}
			close(c.conn.in)
			if err := c.wait(); err != nil {
				t.Fatalf("session ended with %v after a clean close", err)
			}
		case err := <-c.done:
			if err == nil {
				t.Fatalf("opening frame %v ended the stream without an error", frame)
			}
		case <-time.After(waitTime):
			t.Fatalf("no answer to opening frame %v", frame)
		}

		// After a Hello: the session answers a following Ping or ends with
		// an error.
		c = te.connect(t, "tok:fuzz:d1")
		c.send(frame)
		c.send(&edgev1.ClientFrame{Id: math.MaxUint64, Kind: &edgev1.ClientFrame_Ping{Ping: &edgev1.Ping{}}})
		for answered := false; !answered; {
			select {
			case f := <-c.conn.out:
				answered = f.GetPong() != nil && f.GetId() == math.MaxUint64
			case err := <-c.done:
				if err == nil {
					t.Fatalf("frame %v ended the session without an error", frame)
				}
				return
			case <-time.After(waitTime):
				t.Fatalf("no pong after frame %v", frame)
			}
		}
		close(c.conn.in)
		if err := c.wait(); err != nil {
			t.Fatalf("session ended with %v after a clean close", err)
		}
	})
}
