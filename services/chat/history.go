package chat

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// A member who left sees the conversation as it was at its leaving seq.
// Messages are stored as they are now (edits overwrite, recalls empty), so
// for former members, which are rare, each message is rewound from the
// event log (Store.MessageChanges): the first edit or recall after leaving
// holds the content it replaced (NewEvent.Prev), and reactions are
// replayed up to leaving.

// formerRows are the message and edit rows of one conversation a page read for a
// member who left it at left; at holds their places in the page.
type formerRows struct {
	left int64
	at   []int
	rows []EventRow
}

// isContentChange says whether a change replaced a message's content.
func isContentChange(k EventKind) bool { return k == KindMessageEdited || k == KindMessageRecalled }

// rewind sets rows (seq <= left) back to how they were at left: messages,
// and edits whose content a recall after left emptied.
func (s *Service) rewind(ctx context.Context, convID uuid.UUID, left int64, rows []EventRow) error {
	bySeq := make(map[int64]*EventRow, len(rows))
	var targets []int64
	type emptied struct {
		row    *EventRow
		edit   *chatv1.MessageEdited
		target int64
	}
	var edits []emptied
	for i := range rows {
		r := &rows[i]
		if r.Kind != KindMessageEdited {
			bySeq[r.Seq] = r
			targets = append(targets, r.Seq)
			continue
		}
		var ev chatv1.Event
		if err := proto.Unmarshal(r.Body, &ev); err != nil {
			return fmt.Errorf("decode edit %d: %w", r.Seq, err)
		}
		if ev.GetMessageEdited().GetContent() == nil {
			target := int64(ev.GetMessageEdited().GetMessageSeq())
			edits = append(edits, emptied{r, ev.GetMessageEdited(), target})
			targets = append(targets, target)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	changes, err := s.store.MessageChanges(ctx, convID, targets)
	if err != nil {
		return fmt.Errorf("changes of messages: %w", err)
	}

	// An edit that a recall after left emptied gets back the content it
	// set: what the next change of its message replaced.
	recalledAfter := map[int64]bool{}
	for _, c := range changes {
		if c.Kind == KindMessageRecalled && c.Seq > left {
			recalledAfter[c.Target] = true
		}
	}
	for _, e := range edits {
		if !recalledAfter[e.target] {
			continue
		}
		for _, c := range changes {
			if c.Target != e.target || c.Seq <= e.row.Seq || !isContentChange(c.Kind) {
				continue
			}
			if c.Prev != nil {
				content := new(chatv1.MessageContent)
				if err := proto.Unmarshal(c.Prev, content); err != nil {
					return fmt.Errorf("decode previous content %d: %w", e.row.Seq, err)
				}
				e.edit.Content = content
				if e.row.Body, err = proto.Marshal(&chatv1.Event{Kind: &chatv1.Event_MessageEdited{MessageEdited: e.edit}}); err != nil {
					return err
				}
			}
			break
		}
	}

	// A message changed after left is as the first such change found it;
	// events from before prev bodies were kept have none, and such a
	// message stays as it is now. Its edit time is then its last edit's
	// before left.
	rewound := map[int64]bool{}
	lastEdit := map[int64]time.Time{}
	for _, c := range changes {
		r := bySeq[c.Target]
		if r == nil || !isContentChange(c.Kind) {
			continue
		}
		if c.Seq <= left {
			if c.Kind == KindMessageEdited {
				lastEdit[c.Target] = c.Created
			}
			continue
		}
		if c.Prev != nil && !rewound[c.Target] {
			rewound[c.Target] = true
			r.Body, r.RecallTime, r.EditTime = c.Prev, nil, nil
		}
	}
	for target := range rewound {
		if at, ok := lastEdit[target]; ok {
			bySeq[target].EditTime = &at
		}
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
	changes, err := s.store.MessageChanges(ctx, convID, seqs)
	if err != nil {
		return fmt.Errorf("reactions before leaving: %w", err)
	}
	type key struct {
		seq   int64
		emoji string
	}
	users := map[key]map[uuid.UUID]bool{}
	var order []key // by first use, as addReactions orders them
	for _, c := range changes {
		if c.Seq > left || (c.Kind != KindReactionAdded && c.Kind != KindReactionRemoved) {
			continue
		}
		var ev chatv1.Event
		if err := proto.Unmarshal(c.Body, &ev); err != nil {
			return fmt.Errorf("decode reaction %d: %w", c.Target, err)
		}
		emoji := ev.GetReactionAdded().GetEmoji()
		if c.Kind == KindReactionRemoved {
			emoji = ev.GetReactionRemoved().GetEmoji()
		}
		k := key{c.Target, emoji}
		if users[k] == nil {
			users[k] = map[uuid.UUID]bool{}
		}
		if c.Kind == KindReactionRemoved {
			delete(users[k], c.Actor)
			continue
		}
		if len(users[k]) == 0 {
			order = append(order, k)
		}
		users[k][c.Actor] = true
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
