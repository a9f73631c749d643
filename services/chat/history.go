package chat

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// A member who left sees the conversation as it was at its leaving seq.
// Messages are stored as they are now (edits overwrite, recalls empty), so
// for former members, which are rare, each message is rewound from the
// event log: the first edit or recall after leaving holds the content it
// replaced (prev_body), and reactions are replayed up to leaving.

// formerRows are the message and edit rows of one conversation a page read for a
// member who left it at left; at holds their places in the page.
type formerRows struct {
	left int64
	at   []int
	rows []eventRow
}

// rewind sets rows (seq <= left) back to how they were at left: messages,
// and edits whose content a recall after left emptied.
func (s *Service) rewind(ctx context.Context, convID uuid.UUID, left int64, rows []eventRow) error {
	bySeq := make(map[int64]*eventRow, len(rows))
	seqs := make([]int64, 0, len(rows))
	var edits []*eventRow
	for i := range rows {
		if rows[i].kind == kindMessageEdited {
			edits = append(edits, &rows[i])
			continue
		}
		bySeq[rows[i].seq] = &rows[i]
		seqs = append(seqs, rows[i].seq)
	}
	if err := s.restoreEdits(ctx, convID, left, edits); err != nil {
		return err
	}
	if len(seqs) == 0 {
		return nil
	}
	// Events before the prev_body column have none: such a message stays
	// as it is now.
	changed, err := s.db.Query(ctx, `SELECT DISTINCT ON (target_seq) target_seq, prev_body FROM events
		WHERE conversation_id = $1 AND target_seq = ANY($2) AND seq > $3 AND kind IN ($4, $5) AND prev_body IS NOT NULL
		ORDER BY target_seq, seq`, convID, seqs, left, kindMessageEdited, kindMessageRecalled)
	if err != nil {
		return fmt.Errorf("changes after leaving: %w", err)
	}
	var rewound []int64
	var target int64
	var prev []byte
	if _, err := pgx.ForEachRow(changed, []any{&target, &prev}, func() error {
		r := bySeq[target]
		r.body, r.recallTime, r.editTime = prev, nil, nil
		rewound = append(rewound, target)
		return nil
	}); err != nil {
		return fmt.Errorf("changes after leaving: %w", err)
	}
	if len(rewound) == 0 {
		return nil
	}
	lastEdits, err := s.db.Query(ctx, `SELECT target_seq, max(create_time) FROM events
		WHERE conversation_id = $1 AND target_seq = ANY($2) AND seq <= $3 AND kind = $4 GROUP BY target_seq`,
		convID, rewound, left, kindMessageEdited)
	if err != nil {
		return fmt.Errorf("edits before leaving: %w", err)
	}
	var at time.Time
	if _, err := pgx.ForEachRow(lastEdits, []any{&target, &at}, func() error {
		edited := at
		bySeq[target].editTime = &edited
		return nil
	}); err != nil {
		return fmt.Errorf("edits before leaving: %w", err)
	}
	return nil
}

// restoreEdits gives back their content to edits (seq <= left) that a
// recall after left emptied: the content an edit set is what the next
// change replaced.
func (s *Service) restoreEdits(ctx context.Context, convID uuid.UUID, left int64, edits []*eventRow) error {
	bySeq := map[int64]*eventRow{}
	var seqs, targets []int64
	for _, r := range edits {
		var ev chatv1.Event
		if err := proto.Unmarshal(r.body, &ev); err != nil {
			return fmt.Errorf("decode edit %d: %w", r.seq, err)
		}
		if ev.GetMessageEdited().GetContent() == nil {
			bySeq[r.seq] = r
			seqs, targets = append(seqs, r.seq), append(targets, int64(ev.GetMessageEdited().GetMessageSeq()))
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	rows, err := s.db.Query(ctx, `SELECT x.seq, x.target, n.prev_body FROM unnest($2::bigint[], $3::bigint[]) AS x(seq, target)
		CROSS JOIN LATERAL (SELECT prev_body FROM events n WHERE n.conversation_id = $1 AND n.target_seq = x.target
			AND n.seq > x.seq AND n.kind IN ($5, $6) ORDER BY n.seq LIMIT 1) n
		WHERE n.prev_body IS NOT NULL AND EXISTS (SELECT 1 FROM events r WHERE r.conversation_id = $1
			AND r.target_seq = x.target AND r.kind = $6 AND r.seq > $4)`,
		convID, seqs, targets, left, kindMessageEdited, kindMessageRecalled)
	if err != nil {
		return fmt.Errorf("emptied edits: %w", err)
	}
	var seq, target int64
	var prev []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &target, &prev}, func() error {
		content := new(chatv1.MessageContent)
		if err := proto.Unmarshal(prev, content); err != nil {
			return fmt.Errorf("decode previous content %d: %w", seq, err)
		}
		r := bySeq[seq]
		var old chatv1.Event
		if err := proto.Unmarshal(r.body, &old); err != nil {
			return fmt.Errorf("decode edit %d: %w", seq, err)
		}
		edit := old.GetMessageEdited()
		edit.Content = content
		body, err := proto.Marshal(&chatv1.Event{Kind: &chatv1.Event_MessageEdited{MessageEdited: edit}})
		r.body = body
		return err
	})
	if err != nil {
		return fmt.Errorf("emptied edits: %w", err)
	}
	return nil
}

// reactionsAsOf fills in msgs' reaction summaries as they were at left,
// replaying the reaction events up to it; recalled messages have none.
func (s *Service) reactionsAsOf(ctx context.Context, convID, uid uuid.UUID, left int64, msgs []*chatv1.Message) error {
	bySeq := make(map[int64]*chatv1.Message, len(msgs))
	seqs := make([]int64, 0, len(msgs))
	for _, m := range msgs {
		if m.GetRecallTime() == nil {
			bySeq[int64(m.GetSeq())] = m
			seqs = append(seqs, int64(m.GetSeq()))
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	rows, err := s.db.Query(ctx, `SELECT target_seq, kind, actor_id, body FROM events
		WHERE conversation_id = $1 AND target_seq = ANY($2) AND seq <= $3 AND kind IN ($4, $5) ORDER BY seq`,
		convID, seqs, left, kindReactionAdded, kindReactionRemoved)
	if err != nil {
		return fmt.Errorf("reactions before leaving: %w", err)
	}
	type key struct {
		seq   int64
		emoji string
	}
	users := map[key]map[uuid.UUID]bool{}
	var order []key // by first use, as addReactions orders them
	var (
		target int64
		kind   int16
		actor  uuid.UUID
		body   []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&target, &kind, &actor, &body}, func() error {
		var ev chatv1.Event
		if err := proto.Unmarshal(body, &ev); err != nil {
			return fmt.Errorf("decode reaction %d: %w", target, err)
		}
		emoji := ev.GetReactionAdded().GetEmoji()
		if kind == kindReactionRemoved {
			emoji = ev.GetReactionRemoved().GetEmoji()
		}
		k := key{target, emoji}
		if users[k] == nil {
			users[k] = map[uuid.UUID]bool{}
		}
		if kind == kindReactionRemoved {
			delete(users[k], actor)
			return nil
		}
		if len(users[k]) == 0 {
			order = append(order, k)
		}
		users[k][actor] = true
		return nil
	}); err != nil {
		return fmt.Errorf("reactions before leaving: %w", err)
	}
	seen := map[key]bool{}
	for _, k := range order {
		if seen[k] || len(users[k]) == 0 {
			continue
		}
		seen[k] = true
		m := bySeq[k.seq]
		m.Reactions = append(m.Reactions, &chatv1.ReactionSummary{Emoji: k.emoji, Count: uint32(len(users[k])), ReactedByMe: users[k][uid]})
	}
	return nil
}
