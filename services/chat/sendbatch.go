package chat

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
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

// storeSends stores a batch with one Store.AppendMessages: one
// transaction, one lock, one commit. A send repeated within the batch is
// not passed on and is answered like one stored before.
func (s *Service) storeSends(conv uuid.UUID, batch []*sendReq) {
	// Not a caller's context: the batch serves every caller in it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type key struct {
		actor uuid.UUID
		id    string
	}
	first := make(map[key]bool, len(batch))
	msgs := make([]NewMessage, 0, len(batch))
	sent := make([]*sendReq, 0, len(batch)) // parallel to msgs
	for _, r := range batch {
		k := key{r.actor, r.clientMsgID}
		if first[k] {
			continue // a repeat of an earlier send of this batch: not stored
		}
		first[k] = true
		msgs = append(msgs, NewMessage{Actor: r.actor, Device: r.device, Body: r.content, MessageID: r.msgID, ClientMsgID: r.clientMsgID})
		sent = append(sent, r)
	}
	stored, err := s.store.AppendMessages(ctx, conv, msgs)
	results := make(map[*sendReq]sendResult, len(batch))
	for i, m := range stored {
		if m.Stored {
			results[sent[i]] = sendResult{stored: true, seq: m.Seq, at: m.At}
		}
	}
	for _, r := range batch {
		res := results[r] // not there: refused, or stored before
		if err != nil {
			res = sendResult{err: err}
		}
		r.done <- res
	}
}
