package sqlite

import (
	"maps"
	"testing"

	"github.com/google/uuid"
)

func TestSyncCursorRoundTrip(t *testing.T) {
	tests := []syncCursor{
		{skip: map[uuid.UUID]int64{}},
		{watermark: 1, next: 2, skip: map[uuid.UUID]int64{uuid.New(): 3}},
		{watermark: 1 << 40, next: 1<<40 + 7, conv: uuid.New(), seq: 99, userSeq: 12, skip: map[uuid.UUID]int64{uuid.New(): 5, uuid.New(): 1 << 50}},
	}
	for _, c := range tests {
		got, err := decodeSyncCursor(c.encode())
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", c, err)
		}
		if got.watermark != c.watermark || got.next != c.next || got.conv != c.conv || got.seq != c.seq || got.userSeq != c.userSeq || !maps.Equal(got.skip, c.skip) {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
	}
	for _, bad := range []string{"x", "AA", "!!!", syncCursor{}.encode() + "AA", syncCursor{}.encode()[:4]} {
		if _, err := decodeSyncCursor(bad); err == nil {
			t.Errorf("decodeSyncCursor(%q) accepted garbage", bad)
		}
	}
}

// A cursor holds at most maxCursorPositions positions; the rest are left
// out rather than making the cursor undecodable.
func TestSyncCursorBoundsItsPositions(t *testing.T) {
	c := syncCursor{skip: map[uuid.UUID]int64{}}
	for i := range maxCursorPositions + 10 {
		c.skip[uuid.New()] = int64(i)
	}
	got, err := decodeSyncCursor(c.encode())
	if err != nil || len(got.skip) != maxCursorPositions {
		t.Fatalf("decoded %d positions (%v), want %d", len(got.skip), err, maxCursorPositions)
	}
}

// Cursors come from clients: decoding must never panic, and whatever it
// accepts must encode back to an equivalent cursor.
func FuzzSyncCursor(f *testing.F) {
	f.Add(syncCursor{watermark: 3, next: 9, conv: uuid.New(), seq: 4, skip: map[uuid.UUID]int64{uuid.New(): 2}}.encode())
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeSyncCursor(s)
		if err != nil {
			return
		}
		again, err := decodeSyncCursor(c.encode())
		if err != nil || again.watermark != c.watermark || again.next != c.next || again.seq != c.seq || !maps.Equal(again.skip, c.skip) {
			t.Fatalf("accepted %q but its re-encoding differs: %+v vs %+v (%v)", s, c, again, err)
		}
	})
}
