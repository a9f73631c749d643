package chat_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/services/chat"
)

// Concurrent sends to one conversation share transactions: each is stored
// once with a gap-free seq, repeats (even within one batch) get their
// original, a sender who may not write is refused without failing the
// others, and the sends share write transactions.
func TestConcurrentSendsAreCommittedTogether(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		f.svc = chat.New(chat.Config{SendRate: 1e6, SendBurst: 1e6}, f.store, nil, testLog())
		alice, _ := f.user("alice")
		bob, bobID := f.user("bob")
		stranger, _ := f.user("stranger")
		conv := f.group(alice, bobID) // seq 1
		transactions := f.countTransactions()

		const n = 200
		type outcome struct {
			clientID string
			res      *chatv1.SendMessageResponse
			err      error
		}
		out := make(chan outcome, 3*n)
		var wg sync.WaitGroup
		for i := range n {
			who := []context.Context{alice, bob}[i%2]
			id := fmt.Sprint("m", i)
			wg.Go(func() {
				res, err := f.svc.SendMessage(who, textReq(conv, id, id))
				out <- outcome{id, res, err}
			})
			if i%10 == 0 { // the same send twice, at the same moment
				wg.Go(func() {
					res, err := f.svc.SendMessage(who, textReq(conv, id, id))
					out <- outcome{id, res, err}
				})
			}
			if i%50 == 0 {
				wg.Go(func() {
					_, err := f.svc.SendMessage(stranger, textReq(conv, "s"+id, "let me in"))
					out <- outcome{"stranger", nil, err}
				})
			}
		}
		wg.Wait()
		close(out)
		stored := map[string]uint64{} // client id -> seq
		var seqs []uint64
		dups := 0
		for o := range out {
			if o.clientID == "stranger" {
				wantCode(t, o.err, connect.CodeNotFound)
				continue
			}
			if o.err != nil {
				t.Fatalf("send %s: %v", o.clientID, o.err)
			}
			// A repeat's answer may come before its original's.
			if o.res.GetDuplicate() {
				dups++
			}
			seq := o.res.GetMessage().GetSeq()
			if prev, ok := stored[o.clientID]; ok {
				if prev != seq {
					t.Fatalf("%s stored at %d and %d", o.clientID, prev, seq)
				}
				continue
			}
			stored[o.clientID] = seq
			seqs = append(seqs, seq)
		}
		slices.Sort(seqs)
		for i, seq := range seqs {
			if seq != uint64(i+2) {
				t.Fatalf("seqs %v: not gap-free from 2", seqs)
			}
		}
		if len(stored) != n || dups != n/10 {
			t.Fatalf("%d sends stored, %d repeats answered; want %d and %d", len(stored), dups, n, n/10)
		}
		if got := f.conversation(alice, conv).GetLastSeq(); got != n+1 {
			t.Fatalf("last seq %d, want %d", got, n+1)
		}
		txns := transactions(n)
		t.Logf("%d concurrent sends took %d transactions", n, txns)
		if txns >= n {
			t.Fatalf("%d concurrent sends took %d transactions: none shared one", n, txns)
		}
		var events int
		if err := f.db.queryRow(context.Background(), `SELECT count(*) FROM events WHERE conversation_id = $1 AND kind = 1`, uuid.MustParse(conv)).Scan(&events); err != nil || events != n {
			t.Fatalf("%d messages stored (%v), want %d", events, err, n)
		}
	})
}

// countTransactions returns a func that tells how many write transactions
// stored the n sends made since: Postgres counts the rows written (a send
// alone writes two, its event and the conversation's bump; sends sharing a
// transaction bump it once), the embedded store its change counter (bumped
// once per write transaction).
func (f *fixture) countTransactions() func(n int) int64 {
	f.t.Helper()
	if f.backend == "postgres" {
		written := pgtest.CountWrites(f.t, f.postgres())
		return func(n int) int64 { return written() - int64(n) }
	}
	counter := func() (seq int64) {
		f.t.Helper()
		if err := f.db.queryRow(context.Background(), `SELECT seq FROM change_counter`).Scan(&seq); err != nil {
			f.t.Fatal(err)
		}
		return seq
	}
	before := counter()
	return func(int) int64 { return counter() - before }
}

// Concurrent sends to many 1:1 conversations, each member one send at a
// time as an edge session sends, with some sent twice at once: every send
// is stored once, a repeat gets its original's seq marked duplicate, and
// each conversation's seqs are gap-free, however the store combines them.
func TestConcurrentSendsAcrossConversations(t *testing.T) {
	forEachStore(t, func(t *testing.T) {
		f := newFixture(t)
		f.svc = chat.New(chat.Config{SendRate: 1e6, SendBurst: 1e6}, f.store, nil, testLog())
		const pairs, each = 30, 6
		type member struct {
			ctx  context.Context
			conv string
		}
		var members []member
		for i := range pairs {
			alice, _ := f.user(fmt.Sprint("a", i))
			bob, bobID := f.user(fmt.Sprint("b", i))
			res, err := f.svc.CreateDirectConversation(alice, &chatv1.CreateDirectConversationRequest{PeerUserId: bobID})
			if err != nil {
				t.Fatal(err)
			}
			conv := res.GetConversation().GetConversationId()
			members = append(members, member{alice, conv}, member{bob, conv})
		}
		type outcome struct {
			conv, id string
			seq      uint64
			dup      bool
		}
		out := make(chan outcome, len(members)*each*2)
		var wg sync.WaitGroup
		for mi, m := range members {
			wg.Go(func() {
				for i := range each {
					id := fmt.Sprint(mi, "-", i)
					send := func() {
						res, err := f.svc.SendMessage(m.ctx, textReq(m.conv, id, id))
						if err != nil {
							t.Errorf("send %s: %v", id, err)
							return
						}
						out <- outcome{m.conv, id, res.GetMessage().GetSeq(), res.GetDuplicate()}
					}
					if i%3 == 0 { // the same send twice, at the same moment
						var twice sync.WaitGroup
						twice.Go(send)
						twice.Go(send)
						twice.Wait()
						continue
					}
					send()
				}
			})
		}
		wg.Wait()
		close(out)
		stored := map[string]uint64{}
		byConv := map[string][]uint64{}
		answers, originals := 0, 0
		for o := range out {
			answers++
			if !o.dup {
				originals++
			}
			if prev, ok := stored[o.id]; ok {
				if prev != o.seq {
					t.Fatalf("%s stored at %d and %d", o.id, prev, o.seq)
				}
				continue
			}
			stored[o.id] = o.seq
			byConv[o.conv] = append(byConv[o.conv], o.seq)
		}
		// Each send is answered once as stored, and each repeat as a
		// duplicate of it.
		if want := len(members) * each; len(stored) != want || originals != want || answers != want+want/3 {
			t.Fatalf("%d sends stored, %d answers, %d not duplicates; want %d, %d, %d", len(stored), answers, originals, want, want+want/3, want)
		}
		for conv, seqs := range byConv {
			slices.Sort(seqs)
			for i, seq := range seqs {
				if seq != uint64(i+2) { // seq 1: the conversation's creation
					t.Fatalf("%s: seqs %v not gap-free from 2", conv, seqs)
				}
			}
		}
	})
}
