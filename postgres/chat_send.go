package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wagglechat/waggle/internal/chatsql"
	"github.com/wagglechat/waggle/services/chat"
)

// Sends are group-committed across conversations. The core already gives
// each conversation one AppendMessages call at a time (sendbatch.go), so
// 1:1 conversations hand over one or two sends per call: a commit per
// call would be a commit per send. Here concurrent calls, whatever their
// conversations, queue; up to maxSendTxs transactions run at once, each
// taking every call queued when it starts (up to maxTxSends messages), so
// under load one lock statement, one insert statement and one WAL flush
// serve many conversations, and an idle store still starts a send's
// transaction at once. See docs/architecture.md (send path) for the
// measurements behind both limits.
const (
	// maxSendTxs transactions of sends run at once. Measured with
	// BenchmarkSendMessage (200 senders, 1:1; docs/benchmarks.md): one
	// makes the queue wait a whole round trip and commit; up to 4,
	// throughput rose with each one more while Postgres CPU per send did
	// not; 8 rose a little further at twice the Postgres CPU per send,
	// which a server sharing its cores with Postgres pays for. 4 also
	// leaves most of the pool's 32 connections to everything else.
	maxSendTxs = 4
	// maxTxSends bounds the messages of one transaction, so one
	// transaction's statement stays a few milliseconds and its locks
	// short.
	maxTxSends = 512
)

// appendCall is one AppendMessages waiting for its transaction.
type appendCall struct {
	conv    uuid.UUID
	msgs    []chat.NewMessage
	started bool // taken by a transaction; guarded by sendQueue.mu
	out     []chat.StoredMessage
	err     error
	done    chan struct{} // closed once out and err are set
}

// sendQueue holds the calls no transaction has taken yet.
type sendQueue struct {
	mu      sync.Mutex
	calls   []*appendCall
	running int // transactions in flight
}

// lockConversations takes the row locks of several conversations in id
// order: LockRows sits above the sort, so two transactions locking
// overlapping sets wait for each other instead of deadlocking.
const lockConversations = `SELECT 1 FROM conversations WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE`

// appendMessages is one statement that, under the conversations' locks,
// keeps the sends whose sender may write (canWrite) and whose
// client_msg_id is new in their conversation, bumps each conversation's
// seq once by its count and inserts them at consecutive seqs in array
// order. A refused send is left out, not an error, so one conversation's
// removed member or block never fails another's sends.
var appendMessages = `
	WITH req AS (
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bytea[], $5::uuid[], $6::text[]) WITH ORDINALITY
			AS r(conv, actor, device, body, mid, cmid, ord)),
	ok AS (
		SELECT req.*, row_number() OVER (PARTITION BY req.conv ORDER BY req.ord) AS n
		FROM req JOIN conversations c ON c.id = req.conv
		WHERE ` + chatsql.CanWrite("req.actor") + `
			AND NOT EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = req.conv AND e.actor_id = req.actor AND e.client_msg_id = req.cmid)),
	counts AS (SELECT conv, count(*) AS k FROM ok GROUP BY conv),
	bump AS (
		UPDATE conversations c SET last_seq = c.last_seq + counts.k, change_xid = pg_current_xact_id(), update_time = now()
		FROM counts WHERE c.id = counts.conv
		RETURNING c.id, c.last_seq, counts.k, c.update_time)
	INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, create_time, body, message_id, client_msg_id)
	SELECT ok.conv, bump.last_seq - bump.k + ok.n, 1, ok.actor, ok.device, bump.update_time, ok.body, ok.mid, ok.cmid
	FROM ok JOIN bump ON bump.id = ok.conv
	RETURNING message_id, seq, create_time`

// AppendMessages queues the call for the next transaction of sends. A
// caller whose ctx ends before its call is taken gets ctx's error and
// nothing is stored; once taken, it waits for the outcome (bounded by the
// transaction's own timeout), so an error always means nothing was stored.
func (s *ChatStore) AppendMessages(ctx context.Context, conv uuid.UUID, msgs []chat.NewMessage) ([]chat.StoredMessage, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	c := &appendCall{conv: conv, msgs: msgs, done: make(chan struct{})}
	q := &s.sends
	q.mu.Lock()
	q.calls = append(q.calls, c)
	start := q.running < maxSendTxs
	if start {
		q.running++
	}
	q.mu.Unlock()
	if start {
		go s.commitSends()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		q.mu.Lock()
		if !c.started {
			q.calls = slices.DeleteFunc(q.calls, func(o *appendCall) bool { return o == c })
			q.mu.Unlock()
			return nil, ctx.Err()
		}
		q.mu.Unlock()
		<-c.done
	}
	return c.out, c.err
}

// commitSends runs transactions of queued calls until none is left.
func (s *ChatStore) commitSends() {
	q := &s.sends
	for {
		q.mu.Lock()
		if len(q.calls) == 0 {
			q.running--
			q.mu.Unlock()
			return
		}
		n, size := 0, 0
		for n < len(q.calls) && (n == 0 || size+len(q.calls[n].msgs) <= maxTxSends) {
			size += len(q.calls[n].msgs)
			q.calls[n].started = true
			n++
		}
		calls := slices.Clone(q.calls[:n])
		q.calls = slices.Delete(q.calls, 0, n)
		q.mu.Unlock()
		s.storeCalls(calls)
	}
}

// storeCalls stores calls in one transaction. If it fails (a statement
// error aborts the whole transaction: a unique violation, a deadlock with
// some other writer, a lost connection), each call is retried in a
// transaction of its own, so only the failing call's sends fail.
func (s *ChatStore) storeCalls(calls []*appendCall) {
	// Not a caller's context: the transaction serves every call in it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.appendBatch(ctx, calls); err != nil {
		if len(calls) == 1 {
			calls[0].out, calls[0].err = nil, err
		} else {
			for _, c := range calls {
				if err := s.appendBatch(ctx, []*appendCall{c}); err != nil {
					c.out, c.err = nil, err
				}
			}
		}
	}
	for _, c := range calls {
		close(c.done)
	}
}

// appendBatch stores calls with one lock statement and one insert
// statement, sent as one pipelined batch: one round trip and one implicit
// transaction, so one commit. It sets each call's out unless it fails.
func (s *ChatStore) appendBatch(ctx context.Context, calls []*appendCall) error {
	size := 0
	for _, c := range calls {
		size += len(c.msgs)
	}
	// A conversation's calls share its lock; if it has several here, a
	// later call's repeat of an earlier one's client_msg_id is left out,
	// as if the earlier call had committed first.
	convs := make([]pgtype.UUID, 0, len(calls))
	callsOf := make(map[uuid.UUID]int, len(calls))
	for _, c := range calls {
		if callsOf[c.conv] == 0 {
			convs = append(convs, pgUUID(c.conv))
		}
		callsOf[c.conv]++
	}
	type sendKey struct {
		conv, actor uuid.UUID
		cmid        string
	}
	seen := map[sendKey]bool{}
	// pgtype.UUID, not uuid.UUID: pgx encodes a uuid.UUID through its
	// driver.Valuer (a string, parsed back) and, in an array, first tries
	// plans that fail with a formatted error per element; that was a third
	// of this path's CPU.
	rowConv, actors, mids := make([]pgtype.UUID, 0, size), make([]pgtype.UUID, 0, size), make([]pgtype.UUID, 0, size)
	devices := make([]pgtype.UUID, 0, size)
	bodies := make([][]byte, 0, size)
	cmids := make([]string, 0, size)
	type slot struct{ call, i int }
	at := make(map[[16]byte]slot, size)
	outs := make([][]chat.StoredMessage, len(calls))
	for ci, c := range calls {
		outs[ci] = make([]chat.StoredMessage, len(c.msgs))
		for i, m := range c.msgs {
			if callsOf[c.conv] > 1 {
				k := sendKey{c.conv, m.Actor, m.ClientMsgID}
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			var device pgtype.UUID
			if m.Device != nil {
				device = pgUUID(*m.Device)
			}
			rowConv = append(rowConv, pgUUID(c.conv))
			actors, devices, bodies = append(actors, pgUUID(m.Actor)), append(devices, device), append(bodies, m.Body)
			mids, cmids = append(mids, pgUUID(m.MessageID)), append(cmids, m.ClientMsgID)
			at[m.MessageID] = slot{ci, i}
		}
	}
	b := &pgx.Batch{}
	b.Queue(lockConversations, convs)
	b.Queue(appendMessages, rowConv, actors, devices, bodies, mids, cmids)
	br := s.db.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			var mid pgtype.UUID
			var seq int64
			var created time.Time
			_, err = pgx.ForEachRow(rows, []any{&mid, &seq, &created}, func() error {
				if sl, ok := at[mid.Bytes]; ok {
					outs[sl.call][sl.i] = chat.StoredMessage{Stored: true, Seq: seq, At: created}
				}
				return nil
			})
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store %d sends of %d conversations: %w", size, len(convs), err)
	}
	for ci, c := range calls {
		c.out, c.err = outs[ci], nil
	}
	return nil
}

func pgUUID(u uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: u, Valid: true} }
