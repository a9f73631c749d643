package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/services/chat"
)

// direct creates a direct conversation of two new users.
func direct(t *testing.T, s *postgres.ChatStore) (conv, a, b uuid.UUID) {
	t.Helper()
	a, b = uuid.New(), uuid.New()
	err := s.InTx(context.Background(), func(tx chat.Tx) error {
		var err error
		conv, _, err = tx.CreateDirect(context.Background(), uuid.New(), a, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return conv, a, b
}

func msg(actor uuid.UUID, cmid string) chat.NewMessage {
	return chat.NewMessage{Actor: actor, Body: []byte(cmid), MessageID: uuid.New(), ClientMsgID: cmid}
}

// seqs returns conv's message seqs by client_msg_id, and how many
// transactions stored them.
func seqs(t *testing.T, db *pgxpool.Pool, convs []uuid.UUID) (map[string]int64, int) {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT conversation_id, client_msg_id, seq FROM events
		WHERE kind = 1 AND conversation_id = ANY($1)`, convs)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for rows.Next() {
		var conv uuid.UUID
		var cmid string
		var seq int64
		if err := rows.Scan(&conv, &cmid, &seq); err != nil {
			t.Fatal(err)
		}
		got[conv.String()+"/"+cmid] = seq
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var txs int
	if err := db.QueryRow(context.Background(), `SELECT count(DISTINCT xid) FROM events WHERE kind = 1 AND conversation_id = ANY($1)`,
		convs).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	return got, txs
}

// Concurrent sends to many conversations share transactions (each events
// row records its transaction's id), and each conversation's seqs stay
// gap-free and in the order of its calls, each call's sends consecutive.
func TestSendsAcrossConversationsShareCommits(t *testing.T) {
	db := pgtest.New(t)
	s := postgres.NewChatStore(db)
	const nConv, calls, perCall = 100, 5, 2 // 1:1-like: a send or two per call
	convs := make([]uuid.UUID, nConv)
	actors := make([][2]uuid.UUID, nConv)
	for i := range convs {
		convs[i], actors[i][0], actors[i][1] = direct(t, s)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, nConv*calls)
	for i, conv := range convs {
		// Each member sends its calls one after another, as the core does
		// (one call in flight per conversation and process); the two
		// members of a conversation at once, as two chat processes would.
		for who, actor := range actors[i] {
			wg.Go(func() {
				<-start
				for c := range calls {
					msgs := make([]chat.NewMessage, perCall)
					for j := range msgs {
						msgs[j] = msg(actor, fmt.Sprintf("%d-%d-%d", who, c, j))
					}
					out, err := s.AppendMessages(context.Background(), conv, msgs)
					if err != nil {
						errs <- err
						return
					}
					for j := 1; j < len(out); j++ {
						if !out[j].Stored || out[j].Seq != out[j-1].Seq+1 {
							errs <- fmt.Errorf("call %d of %s: seqs %+v not consecutive", c, conv, out)
							return
						}
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, txs := seqs(t, db, convs)
	sends := nConv * 2 * calls * perCall
	if len(got) != sends {
		t.Fatalf("%d sends stored, want %d", len(got), sends)
	}
	for _, conv := range convs {
		used := map[int64]bool{}
		for who := range 2 {
			prev := int64(0)
			for c := range calls {
				for j := range perCall {
					seq := got[fmt.Sprintf("%s/%d-%d-%d", conv, who, c, j)]
					if seq <= prev {
						t.Fatalf("%s: member %d's send %d-%d at seq %d, after %d", conv, who, c, j, seq, prev)
					}
					prev = seq
					used[seq] = true
				}
			}
		}
		for seq := int64(1); seq <= 2*calls*perCall; seq++ {
			if !used[seq] {
				t.Fatalf("%s: seq %d missing (seqs %v)", conv, seq, used)
			}
		}
	}
	// One transaction per call would be nConv*2*calls of them.
	if calls := nConv * 2 * calls; txs > calls/4 {
		t.Fatalf("%d calls took %d transactions, want at most %d", calls, txs, calls/4)
	}
	t.Logf("%d sends in %d calls, %d transactions", sends, nConv*2*calls, txs)
}

// In one combined transaction, a send stored before (by an earlier
// transaction, or by an earlier call of the same transaction) is not
// stored again, a sender removed from one conversation is refused there,
// and the other conversations' sends are stored.
func TestCombinedSendsFailAlone(t *testing.T) {
	db := pgtest.New(t)
	s := postgres.NewChatStore(db)
	ctx := context.Background()
	a, aliceA, bobA := direct(t, s)
	b, aliceB, _ := direct(t, s)
	c, carolC, daveC := direct(t, s)
	if _, err := s.AppendMessages(ctx, a, []chat.NewMessage{msg(aliceA, "x")}); err != nil {
		t.Fatal(err)
	}
	if err := s.InTx(ctx, func(tx chat.Tx) error { return tx.RemoveMember(ctx, c, daveC, 0) }); err != nil {
		t.Fatal(err)
	}
	outs, errs := postgres.StoreTogether(s, []postgres.Call{
		{Conv: a, Msgs: []chat.NewMessage{msg(aliceA, "x"), msg(aliceA, "y")}}, // x repeated
		{Conv: c, Msgs: []chat.NewMessage{msg(daveC, "d"), msg(carolC, "e")}},  // dave was removed
		{Conv: b, Msgs: []chat.NewMessage{msg(aliceB, "z")}},
		{Conv: a, Msgs: []chat.NewMessage{msg(aliceA, "y"), msg(bobA, "w")}}, // y repeats the first call's
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	want := [][]chat.StoredMessage{
		{{Stored: false}, {Stored: true, Seq: 2}},
		{{Stored: false}, {Stored: true, Seq: 1}},
		{{Stored: true, Seq: 1}},
		{{Stored: false}, {Stored: true, Seq: 3}},
	}
	for i := range want {
		for j, w := range want[i] {
			if g := outs[i][j]; g.Stored != w.Stored || g.Seq != w.Seq {
				t.Errorf("call %d send %d: stored %v at %d, want %v at %d", i, j, g.Stored, g.Seq, w.Stored, w.Seq)
			}
		}
	}
	got, txs := seqs(t, db, []uuid.UUID{a, b, c})
	if len(got) != 5 || txs != 2 {
		t.Fatalf("%d sends in %d transactions stored (%v), want 5 in 2", len(got), txs, got)
	}
}

// A statement error aborts a combined transaction (here a message id
// used before, a unique violation): each call is then stored on its own,
// so only the call at fault fails.
func TestCombinedSendsSplitOnError(t *testing.T) {
	db := pgtest.New(t)
	s := postgres.NewChatStore(db)
	ctx := context.Background()
	a, alice, _ := direct(t, s)
	b, bob, _ := direct(t, s)
	taken := msg(alice, "first")
	if _, err := s.AppendMessages(ctx, a, []chat.NewMessage{taken}); err != nil {
		t.Fatal(err)
	}
	again := msg(alice, "second")
	again.MessageID = taken.MessageID
	outs, errs := postgres.StoreTogether(s, []postgres.Call{
		{Conv: a, Msgs: []chat.NewMessage{again}},
		{Conv: b, Msgs: []chat.NewMessage{msg(bob, "ok")}},
	})
	if errs[0] == nil {
		t.Fatalf("a reused message id was stored: %+v", outs[0])
	}
	if errs[1] != nil || !outs[1][0].Stored || outs[1][0].Seq != 1 {
		t.Fatalf("the other conversation's send: %+v, %v; want stored at 1", outs[1], errs[1])
	}
}

// Two combined transactions locking the same conversations, listed in
// opposite orders, take the locks in one order and never deadlock
// (Postgres would abort one of a deadlocked pair after deadlock_timeout).
func TestCombinedSendsDoNotDeadlock(t *testing.T) {
	db := pgtest.New(t)
	s := postgres.NewChatStore(db)
	a, alice, _ := direct(t, s)
	b, bob, _ := direct(t, s)
	const rounds = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w, order := range [][]uuid.UUID{{a, b}, {b, a}} {
		wg.Go(func() {
			for r := range rounds {
				calls := make([]postgres.Call, len(order))
				for i, conv := range order {
					actor := map[uuid.UUID]uuid.UUID{a: alice, b: bob}[conv]
					calls[i] = postgres.Call{Conv: conv, Msgs: []chat.NewMessage{msg(actor, fmt.Sprint(w, "-", r))}}
				}
				if err := postgres.AppendTogether(context.Background(), s, calls); err != nil {
					errs <- fmt.Errorf("round %d: %w", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, _ := seqs(t, db, []uuid.UUID{a, b})
	if len(got) != 4*rounds {
		t.Fatalf("%d sends stored, want %d", len(got), 4*rounds)
	}
}
