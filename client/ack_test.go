package client

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// The ack tests run in a synctest bubble: its clock is fake, so an ack's
// time is exact and waiting for one costs nothing.

// pushAt is a push the fake edge sends, at a time since the test's start.
type pushAt struct {
	id uint64
	at time.Duration
}

// ackAt is an ack the fake edge read, at a time since the test's start.
type ackAt struct {
	id uint64
	at time.Duration
}

// burst is n pushes with ids 1..n, all at once.
func burst(n int, at time.Duration) []pushAt {
	p := make([]pushAt, n)
	for i := range p {
		p[i] = pushAt{id: uint64(i + 1), at: at}
	}
	return p
}

// recordAcks collects the acks sent on s, timed from start, until s closes.
func recordAcks(s *fakeStream, start time.Time) func() []ackAt {
	var mu sync.Mutex
	var acks []ackAt
	keep := func(f *edgev1.ClientFrame) {
		if a := f.GetAck(); a != nil {
			mu.Lock()
			acks = append(acks, ackAt{a.GetPushId(), time.Since(start)})
			mu.Unlock()
		}
	}
	go func() {
		for {
			select {
			case f := <-s.in:
				keep(f)
			case <-s.done:
				for len(s.in) > 0 { // sent before the close
					keep(<-s.in)
				}
				return
			}
		}
	}()
	return func() []ackAt {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(acks)
	}
}

func TestAckPolicy(t *testing.T) {
	const ms = time.Millisecond
	for _, tt := range []struct {
		name   string
		pushes []pushAt
		want   []ackAt
	}{
		{"a lone push is acked after 500 ms", []pushAt{{1, 0}}, []ackAt{{1, 500 * ms}}},
		{"64 pushes in a burst get one ack at once", burst(64, 0), []ackAt{{64, 0}}},
		{"the push after an ack by count waits for a new delay",
			append(burst(64, 0), pushAt{65, 100 * ms}), []ackAt{{64, 0}, {65, 600 * ms}}},
		{"pushes within the delay share one ack of the highest",
			[]pushAt{{1, 0}, {2, 50 * ms}, {3, 499 * ms}}, []ackAt{{3, 500 * ms}}},
		{"the delay runs from the oldest unacked push",
			[]pushAt{{1, 0}, {2, 600 * ms}, {3, 700 * ms}}, []ackAt{{1, 500 * ms}, {3, 1100 * ms}}},
		{"a resent push is acked again, by the highest id held",
			[]pushAt{{1, 0}, {2, 10 * time.Second}, {1, 10 * time.Second}},
			[]ackAt{{1, 500 * ms}, {2, 10*time.Second + 500*ms}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				edge, _, _ := runClient(t, Config{}) // the default policy
				s := <-edge.streams
				s.accept(t, "cur-1")
				start := time.Now()
				acks := recordAcks(s, start)
				for _, p := range tt.pushes {
					time.Sleep(p.at - time.Since(start))
					s.out <- push(p.id, msg("c", p.id))
				}
				time.Sleep(time.Minute) // past every ack due, short of the edge's resend
				if got := acks(); !slices.Equal(got, tt.want) {
					t.Fatalf("acks %v, want %v", got, tt.want)
				}
			})
		})
	}
}

func TestAckPolicyFromConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		edge, _, _ := runClient(t, Config{AckDelay: time.Second, AckEvery: 3})
		s := <-edge.streams
		s.accept(t, "cur-1")
		acks := recordAcks(s, time.Now())
		for _, p := range burst(4, 0) {
			s.out <- push(p.id, msg("c", p.id))
		}
		time.Sleep(time.Minute)
		if got, want := acks(), []ackAt{{3, 0}, {4, time.Second}}; !slices.Equal(got, want) {
			t.Fatalf("acks %v, want %v", got, want)
		}
	})
}

// Push ids count per session: what the old stream brought is never acked
// on the new one, and its delay does not carry over.
func TestAcksBelongToTheirStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		edge, _, _ := runClient(t, Config{})
		s1 := <-edge.streams
		s1.accept(t, "cur-1")
		start := time.Now()
		acks1 := recordAcks(s1, start)
		for id := uint64(1); id <= 3; id++ {
			s1.out <- push(id, msg("c", id))
		}
		synctest.Wait() // applied, not yet acked
		s1.Close()      // the edge went away
		s2 := <-edge.streams
		s2.accept(t, "cur-1")
		acks2 := recordAcks(s2, time.Now())
		time.Sleep(100 * time.Millisecond)
		s2.out <- push(1, msg("c", 4))
		time.Sleep(time.Minute)
		if got := acks1(); len(got) != 0 {
			t.Errorf("acks on the dead stream %v, want none", got)
		}
		if got, want := acks2(), []ackAt{{1, 600 * time.Millisecond}}; !slices.Equal(got, want) {
			t.Errorf("acks on the new stream %v, want %v", got, want)
		}
	})
}

// Before the client closes a stream itself, it acks what it holds.
func TestLastAckBeforeTheClientCloses(t *testing.T) {
	for _, tt := range []struct {
		name  string
		close func(t *testing.T, s *fakeStream, stop func())
	}{
		{"Run's context ends", func(_ *testing.T, _ *fakeStream, stop func()) { stop() }},
		{"a sync fails", func(t *testing.T, s *fakeStream, _ func()) {
			s.out <- &edgev1.ServerFrame{Kind: &edgev1.ServerFrame_SyncRequired{SyncRequired: &edgev1.SyncRequired{}}}
			req := s.expect(t, "a sync", isSync)
			s.out <- &edgev1.ServerFrame{Id: req.GetId(), Kind: &edgev1.ServerFrame_Error{Error: &edgev1.Error{Code: "internal"}}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				edge, _, stop := runClient(t, Config{})
				s := <-edge.streams
				s.accept(t, "cur-1")
				start := time.Now()
				for _, p := range burst(5, 0) {
					s.out <- push(p.id, msg("c", p.id))
				}
				synctest.Wait() // applied, not yet acked
				tt.close(t, s, stop)
				<-s.done
				acks := recordAcks(s, start) // what was sent before the close
				synctest.Wait()
				if got, want := acks(), []ackAt{{5, 0}}; !slices.Equal(got, want) {
					t.Fatalf("acks %v, want %v before the stream closed", got, want)
				}
			})
		})
	}
}
