package postgres

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/services/chat"
)

// How sync finds what a device lacks without a row per member per message
// and without a per-conversation loop:
//
// Every event row records the transaction id (xid8) that wrote it, and every
// conversation the xid of its newest event. A cursor holds a watermark W:
// the oldest transaction still running when the previous sync started (the
// xmin of its snapshot). Every transaction that committed after that snapshot
// has an xid >= W, so the events a device may lack are exactly those with
// xid >= W, in conversations whose change_xid >= W. The work is one index
// probe per conversation of the user that changed since the cursor.
//
// Events at or above the new watermark that this sync did send (their
// transaction committed before the snapshot while an older one was still
// running) would be found again; the cursor carries the highest seq sent in
// such conversations so they are not. known_positions lets a client say what
// it got live, so that is not sent again either.

// syncCursor is the decoded form of the opaque sync cursor.
type syncCursor struct {
	// watermark: events with xid >= watermark may be unseen.
	watermark uint64
	// next is the watermark to hand out once this sync's pages are done.
	next uint64
	// Position of the last event sent in a paged sync.
	conv uuid.UUID
	seq  int64
	// userSeq is the last of the user's own events sent. That sequence is
	// read by this user only, so a plain position is exact.
	userSeq int64
	// sent holds, for conversations where this sync sent events at or above
	// next, the highest seq sent, so the next sync does not send them again.
	// Events of a conversation commit in seq order, so everything up to it
	// has been sent.
	sent map[uuid.UUID]int64
	// skip holds, during a paged sync, the positions the device already had
	// when it started: the previous cursor's sent and its known_positions.
	skip map[uuid.UUID]int64
}

// maxSyncPageBytes bounds a page's encoded events, well under the 4 MiB
// that gRPC clients accept by default.
const maxSyncPageBytes = 2 << 20

// maxCursorPositions bounds the cursor's size. Past it, positions are left
// out and the next sync may repeat events, which clients drop by seq.
const maxCursorPositions = 1000

const cursorVersion = 1

func (c syncCursor) encode() string {
	b := []byte{cursorVersion}
	b = binary.AppendUvarint(b, c.watermark)
	b = binary.AppendUvarint(b, c.next)
	b = append(b, c.conv[:]...)
	b = binary.AppendUvarint(b, uint64(c.seq))
	b = binary.AppendUvarint(b, uint64(c.userSeq))
	for _, m := range []map[uuid.UUID]int64{c.sent, c.skip} {
		b = binary.AppendUvarint(b, uint64(len(m)))
		for conv, seq := range m {
			b = append(b, conv[:]...)
			b = binary.AppendUvarint(b, uint64(seq))
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSyncCursor(s string) (syncCursor, error) {
	c := syncCursor{sent: map[uuid.UUID]int64{}, skip: map[uuid.UUID]int64{}}
	if s == "" {
		return c, nil
	}
	bad := chat.ErrBadCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != cursorVersion {
		return syncCursor{}, bad
	}
	r := bytes.NewReader(b[1:])
	seqOf := func() (int64, error) {
		v, err := binary.ReadUvarint(r)
		if err != nil || v > math.MaxInt64 {
			return 0, bad
		}
		return int64(v), nil
	}
	if c.watermark, err = binary.ReadUvarint(r); err != nil {
		return syncCursor{}, bad
	}
	if c.next, err = binary.ReadUvarint(r); err != nil {
		return syncCursor{}, bad
	}
	if _, err := io.ReadFull(r, c.conv[:]); err != nil {
		return syncCursor{}, bad
	}
	if c.seq, err = seqOf(); err != nil {
		return syncCursor{}, bad
	}
	if c.userSeq, err = seqOf(); err != nil {
		return syncCursor{}, bad
	}
	for _, m := range []map[uuid.UUID]int64{c.sent, c.skip} {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > maxCursorPositions {
			return syncCursor{}, bad
		}
		for range n {
			var conv uuid.UUID
			if _, err := io.ReadFull(r, conv[:]); err != nil {
				return syncCursor{}, bad
			}
			if m[conv], err = seqOf(); err != nil {
				return syncCursor{}, bad
			}
		}
	}
	if r.Len() != 0 {
		return syncCursor{}, bad
	}
	return c, nil
}

// snapshotXmin is the watermark for a sync starting now.
func (s *ChatStore) snapshotXmin(ctx context.Context) (uint64, error) {
	var xmin string
	if err := s.db.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&xmin); err != nil {
		return 0, fmt.Errorf("snapshot xmin: %w", err)
	}
	return strconv.ParseUint(xmin, 10, 64)
}

// SyncCursor is a cursor whose watermark is the oldest transaction running
// now.
func (s *ChatStore) SyncCursor(ctx context.Context) (string, error) {
	w, err := s.snapshotXmin(ctx)
	if err != nil {
		return "", err
	}
	return syncCursor{watermark: w}.encode(), nil
}

const syncQuery = `
	WITH conv AS (
		SELECT m.conversation_id AS id, m.joined_seq, m.left_seq, coalesce(k.seq, 0) AS known
		FROM members m
		JOIN conversations c ON c.id = m.conversation_id
		LEFT JOIN unnest($5::uuid[], $6::bigint[]) AS k(cid, seq) ON k.cid = m.conversation_id
		WHERE m.user_id = $1 AND c.change_xid >= $2::text::xid8 AND m.conversation_id >= $3
	)
	SELECT ` + eventColumns + `, e.xid::text, conv.left_seq FROM conv
	CROSS JOIN LATERAL (
		SELECT * FROM events e
		WHERE e.conversation_id = conv.id
			AND e.seq > greatest(conv.joined_seq, conv.known, CASE WHEN conv.id = $3 THEN $4 ELSE 0 END)
			AND e.seq <= coalesce(conv.left_seq, 9223372036854775807)
			%s
		ORDER BY e.seq LIMIT $7
	) e
	ORDER BY e.conversation_id, e.seq
	LIMIT $7`

// The first event a device may lack in a conversation; events before it
// committed before the watermark.
const sinceWatermark = `AND e.seq >= (SELECT coalesce(min(x.seq), 9223372036854775807) FROM events x
	WHERE x.conversation_id = conv.id AND x.xid >= $2::text::xid8)`

var (
	syncAllQuery   = fmt.Sprintf(syncQuery, "")
	syncSinceQuery = fmt.Sprintf(syncQuery, sinceWatermark)
)

// Sync reads one page: the conversation events (one statement), then the
// user's own events, and the cursor that continues after what page kept.
func (s *ChatStore) Sync(ctx context.Context, user uuid.UUID, cursor string, known map[uuid.UUID]int64, limit int, page chat.SyncPage) (string, bool, error) {
	cur, err := decodeSyncCursor(cursor)
	if err != nil {
		return "", false, err
	}
	if cur.conv == uuid.Nil && cur.seq == 0 {
		// What the device holds for the whole of this sync: what the last
		// sync sent above its watermark, and what the client says it has.
		cur.skip, cur.sent = cur.sent, map[uuid.UUID]int64{}
		for id, seq := range known {
			if len(cur.skip) < maxCursorPositions || cur.skip[id] > 0 {
				cur.skip[id] = max(cur.skip[id], seq)
			}
		}
		if cur.skip, err = s.stillRelevant(ctx, cur.skip, cur.watermark); err != nil {
			return "", false, err
		}
		// Taken before reading: anything this read misses has an xid >= it.
		if cur.next, err = s.snapshotXmin(ctx); err != nil {
			return "", false, err
		}
	}
	knownConv := make([]uuid.UUID, 0, len(cur.skip))
	knownSeq := make([]int64, 0, len(cur.skip))
	for id, seq := range cur.skip {
		knownConv, knownSeq = append(knownConv, id), append(knownSeq, seq)
	}
	query := syncSinceQuery
	if cur.watermark == 0 {
		query = syncAllQuery
	}
	rows, err := s.db.Query(ctx, query, user, strconv.FormatUint(cur.watermark, 10), cur.conv, cur.seq,
		knownConv, knownSeq, limit)
	if err != nil {
		return "", false, fmt.Errorf("sync: %w", err)
	}
	kept, full := 0, false
	var last chat.EventRow
	for rows.Next() {
		var r chat.EventRow
		var xid string
		var left *int64
		if err := rows.Scan(eventFields(&r, &xid, &left)...); err != nil {
			rows.Close()
			return "", false, fmt.Errorf("sync: %w", err)
		}
		ok, err := page.Event(r, left)
		if err != nil {
			rows.Close()
			return "", false, err
		}
		if !ok {
			full = true
			rows.Close()
			break
		}
		kept, last = kept+1, r
		// Sent now but at or above the next watermark: the next sync would
		// find it again unless the cursor remembers it.
		// Once one event of a conversation is recorded, later ones are too:
		// an xid taken before the conversation's lock (a message lock, say)
		// can be lower than an earlier seq's.
		if x, _ := strconv.ParseUint(xid, 10, 64); (x >= cur.next && len(cur.sent) < maxCursorPositions) || cur.sent[r.Conv] > 0 {
			cur.sent[r.Conv] = max(cur.sent[r.Conv], r.Seq)
		}
	}
	if err := rows.Err(); err != nil {
		return "", false, fmt.Errorf("sync: %w", err)
	}
	full = full || kept == limit

	uevRows, err := s.db.Query(ctx, `SELECT seq, create_time, body FROM user_events WHERE user_id = $1 AND seq > $2
		ORDER BY seq LIMIT $3`, user, cur.userSeq, limit)
	if err != nil {
		return "", false, fmt.Errorf("sync user events: %w", err)
	}
	userEvents, err := collectUserEvents(uevRows, user)
	if err != nil {
		return "", false, fmt.Errorf("sync user events: %w", err)
	}
	userDone := len(userEvents) < limit
	for _, ev := range userEvents {
		if !page.UserEvent(ev) {
			userDone = false
			break
		}
		cur.userSeq = int64(ev.GetSeq())
	}

	switch {
	case full:
		cur.conv, cur.seq = last.Conv, last.Seq
		return cur.encode(), true, nil
	case !userDone:
		// Conversations are done; only user events remain. A position past
		// every conversation id ends the conversation part.
		cur.conv, cur.seq = uuid.Max, math.MaxInt64
		return cur.encode(), true, nil
	}
	// Positions the device held before still matter while the watermark
	// has not passed their events; the next sync prunes them.
	for conv, seq := range cur.skip {
		if len(cur.sent) < maxCursorPositions || cur.sent[conv] > 0 {
			cur.sent[conv] = max(cur.sent[conv], seq)
		}
	}
	return syncCursor{watermark: cur.next, sent: cur.sent, userSeq: cur.userSeq}.encode(), false, nil
}

// stillRelevant keeps the positions that can still hide an event from a
// sync at watermark: those of conversations with events at or above the
// watermark at or below the position.
func (s *ChatStore) stillRelevant(ctx context.Context, positions map[uuid.UUID]int64, watermark uint64) (map[uuid.UUID]int64, error) {
	if len(positions) == 0 || watermark == 0 {
		return positions, nil
	}
	convs := make([]uuid.UUID, 0, len(positions))
	seqs := make([]int64, 0, len(positions))
	for c, seq := range positions {
		convs, seqs = append(convs, c), append(seqs, seq)
	}
	rows, err := s.db.Query(ctx, `SELECT k.cid, k.seq FROM unnest($1::uuid[], $2::bigint[]) AS k(cid, seq)
		WHERE EXISTS (SELECT 1 FROM events x WHERE x.conversation_id = k.cid AND x.xid >= $3::text::xid8 AND x.seq <= k.seq)`,
		convs, seqs, strconv.FormatUint(watermark, 10))
	if err != nil {
		return nil, fmt.Errorf("prune positions: %w", err)
	}
	kept := map[uuid.UUID]int64{}
	for rows.Next() {
		var c uuid.UUID
		var seq int64
		if err := rows.Scan(&c, &seq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("prune positions: %w", err)
		}
		kept[c] = seq
	}
	return kept, rows.Err()
}
