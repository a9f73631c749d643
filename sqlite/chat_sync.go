package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/services/chat"
)

// How sync finds what a device lacks: every event row and every
// conversation carry the change sequence of the transaction that wrote
// them (Tx.ChangeSeq), which increases in commit order because writers are
// serial. A cursor holds a watermark W, the counter's value in the snapshot
// of the sync that issued it: that snapshot showed every event with
// change_seq <= W and no other, so the events a device may lack are
// exactly those above W, in conversations whose change_seq is above W.
// Nothing is repeated and nothing skipped, so unlike Postgres's xid8
// scheme the cursor carries no positions of events it sent.
//
// A sync of several pages reads them in several snapshots; its first page
// fixes the next watermark (next), and its later pages read no event above
// it, so what commits while it pages is left to the next sync.

// syncCursor is the decoded form of the opaque sync cursor.
type syncCursor struct {
	// watermark: events with change_seq above it may be unseen.
	watermark int64
	// next, during a paged sync, is the counter when it began: its pages
	// read events up to it, and the next sync starts from it.
	next int64
	// Position of the last event sent in a paged sync.
	conv uuid.UUID
	seq  int64
	// userSeq is the last of the user's own events sent. That sequence is
	// read by this user only, so a plain position is exact.
	userSeq int64
	// skip holds, during a paged sync, the positions the client said it
	// had when the sync began (known_positions).
	skip map[uuid.UUID]int64
}

// maxCursorPositions bounds the cursor's size. Past it, positions are left
// out and a later page may repeat events, which clients drop by seq.
const maxCursorPositions = 1000

const cursorVersion = 1

func (c syncCursor) encode() string {
	b := []byte{cursorVersion}
	b = binary.AppendUvarint(b, uint64(c.watermark))
	b = binary.AppendUvarint(b, uint64(c.next))
	b = append(b, c.conv[:]...)
	b = binary.AppendUvarint(b, uint64(c.seq))
	b = binary.AppendUvarint(b, uint64(c.userSeq))
	n := min(len(c.skip), maxCursorPositions)
	b = binary.AppendUvarint(b, uint64(n))
	for conv, seq := range c.skip {
		if n == 0 {
			break
		}
		n--
		b = append(b, conv[:]...)
		b = binary.AppendUvarint(b, uint64(seq))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSyncCursor(s string) (syncCursor, error) {
	c := syncCursor{skip: map[uuid.UUID]int64{}}
	if s == "" {
		return c, nil
	}
	bad := chat.ErrBadCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != cursorVersion {
		return syncCursor{}, bad
	}
	r := bytes.NewReader(b[1:])
	failed := false
	uvarint := func() int64 {
		v, err := binary.ReadUvarint(r)
		if err != nil || v > math.MaxInt64 {
			failed = true
		}
		return int64(v)
	}
	id := func() (u uuid.UUID) {
		if _, err := io.ReadFull(r, u[:]); err != nil {
			failed = true
		}
		return u
	}
	c.watermark, c.next, c.conv, c.seq, c.userSeq = uvarint(), uvarint(), id(), uvarint(), uvarint()
	n := uvarint()
	if failed || n > maxCursorPositions {
		return syncCursor{}, bad
	}
	for range n {
		conv := id()
		c.skip[conv] = uvarint()
	}
	if failed || r.Len() != 0 {
		return syncCursor{}, bad
	}
	return c, nil
}

// changeCounter reads the change counter: in tx's snapshot, every row with
// change_seq at or below it and none above.
func changeCounter(ctx context.Context, tx *sql.Tx) (int64, error) {
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM change_counter`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read change counter: %w", err)
	}
	return seq, nil
}

// SyncCursor is a cursor whose watermark is the counter now.
func (s *ChatStore) SyncCursor(ctx context.Context) (string, error) {
	var c syncCursor
	err := s.read(ctx, "sync cursor", func(tx *sql.Tx) (err error) {
		c.watermark, err = changeCounter(ctx, tx)
		return err
	})
	if err != nil {
		return "", err
	}
	return c.encode(), nil
}

// syncQuery reads, for user $1, up to $7 events with change_seq in
// ($2, $3] that the user sees, after the position ($4, $5) and after the
// known positions $6 (a JSON object of seqs by conversation id), by
// conversation and seq. The order is spelled so the indexes deliver it and
// the LIMIT ends the scan: a conversation's change_seqs grow with its seqs,
// so its events come in order from the change index and only one
// transaction's events are sorted; m.rowid tells SQLite that each
// conversation comes once (members_user_idx is not unique).
const syncQuery = `
	WITH known (id, seq) AS MATERIALIZED (SELECT key, value FROM json_each($6))
	SELECT ` + eventColumns + `, m.left_seq
	FROM members m
	JOIN conversations c ON c.id = m.conversation_id
	LEFT JOIN known k ON k.id = m.conversation_id
	JOIN events e ON e.conversation_id = m.conversation_id
	WHERE m.user_id = $1 AND m.conversation_id >= $4 AND c.change_seq > $2
		AND e.seq > max(m.joined_seq, coalesce(k.seq, 0), CASE WHEN m.conversation_id = $4 THEN $5 ELSE 0 END)
		AND (m.left_seq IS NULL OR e.seq <= m.left_seq)
		AND e.change_seq > $2 AND e.change_seq <= $3
	ORDER BY m.conversation_id, m.rowid, e.change_seq, e.seq
	LIMIT $7`

// Sync reads one page in one snapshot: the conversation events, then the
// user's own events, and the cursor that continues after what page kept.
func (s *ChatStore) Sync(ctx context.Context, user uuid.UUID, cursor string, known map[uuid.UUID]int64, limit int, page chat.SyncPage) (string, bool, error) {
	cur, err := decodeSyncCursor(cursor)
	if err != nil {
		return "", false, err
	}
	starting := cur.conv == uuid.Nil && cur.seq == 0
	if starting {
		cur.skip = known
	}
	skip, err := json.Marshal(cur.skip)
	if err != nil {
		return "", false, fmt.Errorf("sync: %w", err)
	}
	kept, full, userDone := 0, false, false
	var last chat.EventRow
	err = s.read(ctx, "sync", func(tx *sql.Tx) error {
		if starting {
			next, err := changeCounter(ctx, tx)
			if err != nil {
				return err
			}
			cur.next = next
		}
		rows, err := tx.QueryContext(ctx, syncQuery, user, cur.watermark, cur.next, cur.conv, cur.seq, string(skip), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r chat.EventRow
			var left *int64
			if err := rows.Scan(eventFields(&r, &left)...); err != nil {
				return err
			}
			ok, err := page.Event(r, left)
			if err != nil {
				return err
			}
			if !ok {
				full = true
				break
			}
			kept, last = kept+1, r
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		full = full || kept == limit

		userEvents, err := readUserEvents(ctx, tx, user, cur.userSeq, 0, limit)
		if err != nil {
			return fmt.Errorf("user events: %w", err)
		}
		userDone = len(userEvents) < limit
		for _, ev := range userEvents {
			if !page.UserEvent(ev) {
				userDone = false
				break
			}
			cur.userSeq = int64(ev.GetSeq())
		}
		return nil
	})
	if err != nil {
		return "", false, err
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
	return syncCursor{watermark: cur.next, userSeq: cur.userSeq}.encode(), false, nil
}
