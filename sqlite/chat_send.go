package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/services/chat"
)

// appendMessage inserts one send of a batch at seq $9 unless its sender
// may not write (canWrite) or sent its client_msg_id in the conversation
// before.
var appendMessage = `
	INSERT INTO events (conversation_id, seq, kind, actor_id, actor_device_id, change_seq, create_time, body, message_id, client_msg_id)
	SELECT c.id, $9, 1, $2, $3, $4, $5, $6, $7, $8 FROM conversations c
	WHERE c.id = $1 AND ` + canWrite + `
		AND NOT EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = $1 AND e.actor_id = $2 AND e.client_msg_id = $8)`

// AppendMessages stores the batch in one write transaction, so one commit
// (and one WAL sync) for all of it. The transaction holds the write lock,
// so the seqs it takes after last_seq are the next ones.
func (s *ChatStore) AppendMessages(ctx context.Context, conv uuid.UUID, msgs []chat.NewMessage) ([]chat.StoredMessage, error) {
	var out []chat.StoredMessage
	err := s.db.Write(ctx, func(tx *Tx) error {
		out = make([]chat.StoredMessage, len(msgs))
		now := txTime()
		var last int64
		err := tx.QueryRowContext(ctx, `SELECT last_seq FROM conversations WHERE id = $1`, conv).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // no such conversation: nothing stored
		}
		if err != nil {
			return fmt.Errorf("read seq: %w", err)
		}
		change, err := tx.ChangeSeq(ctx)
		if err != nil {
			return err
		}
		insert, err := tx.PrepareContext(ctx, appendMessage)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		defer insert.Close()
		for i, m := range msgs {
			res, err := insert.ExecContext(ctx, conv, m.Actor, m.Device, change, micros(now), m.Body, m.MessageID, m.ClientMsgID, last+1)
			stored, err := changedRows("insert message", res, err)
			if err != nil {
				return err
			}
			if stored {
				last++
				out[i] = chat.StoredMessage{Stored: true, Seq: last, At: now}
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE conversations SET last_seq = $2, change_seq = $3, update_time = $4
			WHERE id = $1 AND last_seq <> $2`, conv, last, change, micros(now)); err != nil {
			return fmt.Errorf("bump seq: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store %d sends: %w", len(msgs), err)
	}
	return out, nil
}
