package chat

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Sends to one conversation are committed together, group-commit style:
// while a transaction of a conversation's sends is in flight in this
// process, later sends queue, and the next transaction stores them all
// under one lock, one seq bump and one commit. A quiet conversation pays
// one transaction per send as before; a busy one amortises the lock, the
// commit's WAL flush and the statements over the whole batch, and no
// longer queues its senders on the row lock inside Postgres. Several chat
// processes each batch their own sends; the row lock orders them.

// maxSendBatch bounds the sends of one transaction.
const maxSendBatch = 256

// sendReq is one send waiting for its batch.
type sendReq struct {
	actor       uuid.UUID
	device      *uuid.UUID
	content     []byte
	msgID       uuid.UUID
	clientMsgID string
	done        chan sendResult // buffered: the batch never waits for the caller
}

// sendResult is a send's outcome: its seq and time if it was stored now;
// stored false if it was not (the caller finds out why: stored before,
// or refused).
type sendResult struct {
	stored bool
	seq    int64
	at     time.Time
	err    error
}

// sendQueues holds each conversation's pending sends.
type sendQueues struct {
	mu     sync.Mutex
	byConv map[uuid.UUID][]*sendReq // present while a batch of the conversation runs
}

// submit queues r for conv and returns its result. The first send of an
// idle conversation starts a goroutine that commits batches until none is
// left.
func (s *Service) submit(ctx context.Context, conv uuid.UUID, r *sendReq) (sendResult, error) {
	q := &s.sendQ
	q.mu.Lock()
	pending, busy := q.byConv[conv]
	q.byConv[conv] = append(pending, r)
	q.mu.Unlock()
	if !busy {
		go s.commitSends(conv)
	}
	select {
	case res := <-r.done:
		return res, nil
	case <-ctx.Done():
		// The send may still be stored; a retry with its client_msg_id
		// finds it.
		return sendResult{}, ctx.Err()
	}
}

func (s *Service) commitSends(conv uuid.UUID) {
	q := &s.sendQ
	for {
		q.mu.Lock()
		batch := q.byConv[conv]
		if len(batch) == 0 {
			delete(q.byConv, conv)
			q.mu.Unlock()
			return
		}
		if len(batch) > maxSendBatch {
			q.byConv[conv] = batch[maxSendBatch:]
			batch = batch[:maxSendBatch]
		} else {
			q.byConv[conv] = batch[:0:0]
		}
		q.mu.Unlock()
		s.storeSends(conv, batch)
	}
}

// storeSends stores a batch in one transaction. Under the conversation's
// lock, one statement keeps the sends whose sender may write (canWrite) and
// whose client_msg_id is new, takes their seqs and inserts them. A send
// repeated within the batch is answered like one stored before.
func (s *Service) storeSends(conv uuid.UUID, batch []*sendReq) {
	// Not a caller's context: the batch serves every caller in it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type key struct {
		actor uuid.UUID
		id    string
	}
	first := make(map[key]bool, len(batch))
	var (
		actors, mids []uuid.UUID
		devices      []*uuid.UUID
		bodies       [][]byte
		cmids        []string
		byMsg        = make(map[uuid.UUID]*sendReq, len(batch))
	)
	for _, r := range batch {
		k := key{r.actor, r.clientMsgID}
		if first[k] {
			continue // a repeat of an earlier send of this batch: not stored
		}
		first[k] = true
		actors, devices, bodies, mids, cmids = append(actors, r.actor), append(devices, r.device), append(bodies, r.content), append(mids, r.msgID), append(cmids, r.clientMsgID)
		byMsg[r.msgID] = r
	}
	results := make(map[*sendReq]sendResult, len(batch))
	b := &pgx.Batch{}
	b.Queue(lockConversation, conv)
	b.Queue(`
		WITH req AS (
			SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::bytea[], $5::uuid[], $6::text[]) WITH ORDINALITY
				AS r(actor, device, body, mid, cmid, ord)),
		ok AS (
			SELECT req.*, row_number() OVER (ORDER BY req.ord) AS n FROM req, conversations c
			WHERE c.id = $1 AND `+canWriteOf("req.actor")+`
				AND NOT EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = $1 AND e.actor_id = req.actor AND e.client_msg_id = req.cmid)),
		bump AS (
			UPDATE conversations c SET last_seq = last_seq + (SELECT count(*) FROM ok), change_xid = pg_current_xact_id(), update_time = now()
			WHERE c.id = $1 AND EXISTS (SELECT 1 FROM ok)
			RETURNING last_seq, update_time)
		INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, create_time, body, message_id, client_msg_id)
		SELECT $1, bump.last_seq - (SELECT count(*) FROM ok) + ok.n, 1, ok.actor, ok.device, bump.update_time, ok.body, ok.mid, ok.cmid
		FROM bump, ok
		RETURNING message_id, seq, create_time`,
		conv, actors, devices, bodies, mids, cmids)
	br := s.db.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			var mid uuid.UUID
			var seq int64
			var at time.Time
			_, err = pgx.ForEachRow(rows, []any{&mid, &seq, &at}, func() error {
				if r := byMsg[mid]; r != nil {
					results[r] = sendResult{stored: true, seq: seq, at: at}
				}
				return nil
			})
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	for _, r := range batch {
		res, ok := results[r]
		switch {
		case err != nil:
			res = sendResult{err: fmt.Errorf("store %d sends: %w", len(batch), err)}
		case !ok:
			res = sendResult{} // refused, or stored before
		}
		r.done <- res
	}
}
