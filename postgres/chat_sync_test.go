package postgres

import (
	"testing"

	"github.com/google/uuid"
)

func TestSyncCursorRoundTrip(t *testing.T) {
	tests := []syncCursor{
		{sent: map[uuid.UUID]int64{}, skip: map[uuid.UUID]int64{}},
		{watermark: 1, next: 2, sent: map[uuid.UUID]int64{}, skip: map[uuid.UUID]int64{uuid.New(): 3}},
		{watermark: 1 << 40, next: 1<<40 + 7, conv: uuid.New(), seq: 99, userSeq: 12, sent: map[uuid.UUID]int64{uuid.New(): 5, uuid.New(): 1 << 50}, skip: map[uuid.UUID]int64{}},
	}
	for _, c := range tests {
		got, err := decodeSyncCursor(c.encode())
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", c, err)
		}
		if got.watermark != c.watermark || got.next != c.next || got.conv != c.conv || got.seq != c.seq || got.userSeq != c.userSeq || len(got.sent) != len(c.sent) || len(got.skip) != len(c.skip) {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
		for k, v := range c.sent {
			if got.sent[k] != v {
				t.Fatalf("round trip sent[%s] = %d, want %d", k, got.sent[k], v)
			}
		}
	}
	for _, bad := range []string{"x", "AA", "!!!", syncCursor{}.encode() + "AA"} {
		if _, err := decodeSyncCursor(bad); err == nil {
			t.Errorf("decodeSyncCursor(%q) accepted garbage", bad)
		}
	}
}

// Cursors come from clients: decoding must never panic, and whatever it
// accepts must encode back to an equivalent cursor.
func FuzzSyncCursor(f *testing.F) {
	f.Add(syncCursor{watermark: 3, next: 9, conv: uuid.New(), seq: 4, sent: map[uuid.UUID]int64{uuid.New(): 2}}.encode())
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeSyncCursor(s)
		if err != nil {
			return
		}
		again, err := decodeSyncCursor(c.encode())
		if err != nil || again.watermark != c.watermark || again.seq != c.seq || len(again.sent) != len(c.sent) {
			t.Fatalf("accepted %q but its re-encoding differs: %+v vs %+v (%v)", s, c, again, err)
		}
	})
}
