package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wagglechat/waggle/services/chat"
)

// appendMessages is one statement that, under the conversation's lock,
// keeps the sends whose sender may write (canWrite) and whose
// client_msg_id is new, takes their seqs with one bump and inserts them.
var appendMessages = `
	WITH req AS (
		SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::bytea[], $5::uuid[], $6::text[]) WITH ORDINALITY
			AS r(actor, device, body, mid, cmid, ord)),
	ok AS (
		SELECT req.*, row_number() OVER (ORDER BY req.ord) AS n FROM req, conversations c
		WHERE c.id = $1 AND ` + canWriteOf("req.actor") + `
			AND NOT EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = $1 AND e.actor_id = req.actor AND e.client_msg_id = req.cmid)),
	bump AS (
		UPDATE conversations c SET last_seq = last_seq + (SELECT count(*) FROM ok), change_xid = pg_current_xact_id(), update_time = now()
		WHERE c.id = $1 AND EXISTS (SELECT 1 FROM ok)
		RETURNING last_seq, update_time)
	INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, create_time, body, message_id, client_msg_id)
	SELECT $1, bump.last_seq - (SELECT count(*) FROM ok) + ok.n, 1, ok.actor, ok.device, bump.update_time, ok.body, ok.mid, ok.cmid
	FROM bump, ok
	RETURNING message_id, seq, create_time`

// AppendMessages sends the lock and the insert as one pipelined batch: one
// round trip and one implicit transaction, so one commit for the batch.
func (s *ChatStore) AppendMessages(ctx context.Context, conv uuid.UUID, msgs []chat.NewMessage) ([]chat.StoredMessage, error) {
	actors, mids := make([]uuid.UUID, len(msgs)), make([]uuid.UUID, len(msgs))
	devices := make([]*uuid.UUID, len(msgs))
	bodies := make([][]byte, len(msgs))
	cmids := make([]string, len(msgs))
	at := make(map[uuid.UUID]int, len(msgs))
	for i, m := range msgs {
		actors[i], devices[i], bodies[i], mids[i], cmids[i] = m.Actor, m.Device, m.Body, m.MessageID, m.ClientMsgID
		at[m.MessageID] = i
	}
	out := make([]chat.StoredMessage, len(msgs))
	b := &pgx.Batch{}
	b.Queue(lockConversation, conv)
	b.Queue(appendMessages, conv, actors, devices, bodies, mids, cmids)
	br := s.db.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			var mid uuid.UUID
			var seq int64
			var created time.Time
			_, err = pgx.ForEachRow(rows, []any{&mid, &seq, &created}, func() error {
				if i, ok := at[mid]; ok {
					out[i] = chat.StoredMessage{Stored: true, Seq: seq, At: created}
				}
				return nil
			})
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("store %d sends: %w", len(msgs), err)
	}
	return out, nil
}
