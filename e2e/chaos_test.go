package e2e

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
)

// repairLimit is how soon after a dependency is back every online device
// must hold every acknowledged message, with nobody sending more.
const repairLimit = 5 * time.Second

// recoveryLimit bounds the recovery of the faults that take a process's
// state down with it (chat, Postgres, an edge's sessions).
const recoveryLimit = 20 * time.Second

// convergeSoon is converge, and fails if it took longer than repairLimit
// after back.
func convergeSoon(t *testing.T, back time.Time, conv string, last uint64, devices ...*device) {
	t.Helper()
	converge(t, conv, last, devices...)
	took := time.Since(back)
	t.Logf("devices held seqs 1..%d of %s %v after the dependency came back", last, conv, took.Round(time.Millisecond))
	if took > repairLimit {
		t.Errorf("devices held seqs 1..%d of %s %v after the dependency came back, want within %v", last, conv, took.Round(time.Millisecond), repairLimit)
	}
}

// chaosSender sends to conv from d every so often.
type chaosSender struct {
	d     *device
	conv  string
	every time.Duration
}

// chaosTally is what the senders got back during one fault.
type chaosTally struct {
	mu        sync.Mutex
	acked     []*chatv1.Message
	failed    map[connect.Code]int
	example   map[connect.Code]error // the first failure of each code, for the log
	abandoned int                    // unanswered when sending stopped
}

// sendSteadily runs every sender (one send at a time each) until ctx ends,
// and returns a function waiting for them to stop.
func sendSteadily(ctx context.Context, senders []chaosSender, tally *chaosTally) (wait func()) {
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() {
			tick := time.NewTicker(s.every)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				m, err := s.d.client.Send(ctx, s.conv, textContent(fmt.Sprintf("%s chaos #%d", s.d.name, n)))
				tally.mu.Lock()
				switch {
				case err == nil:
					tally.acked = append(tally.acked, m)
				case ctx.Err() != nil:
					tally.abandoned++
				default:
					code := connect.CodeOf(err)
					if tally.failed[code]++; tally.example[code] == nil {
						tally.example[code] = err
					}
				}
				tally.mu.Unlock()
			}
		})
	}
	return wg.Wait
}

// chaosRow is one fault's line of the chaos table.
type chaosRow struct {
	fault                  string
	acked, abandoned       int
	failed                 map[connect.Code]int
	stored                 int // events stored while the fault ran, acked or not
	appliedMin, appliedMax int // events applied per device while the fault ran, and after until recovery
	missing, duplicates    int
	pause, recovery        time.Duration
}

func (r chaosRow) failures() string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(r.failed)) {
		parts = append(parts, fmt.Sprintf("%v:%d", code, r.failed[code]))
	}
	if r.abandoned > 0 {
		parts = append(parts, fmt.Sprintf("unanswered:%d", r.abandoned))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func chaosTable(rows ...chaosRow) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nfault\tacked\tfailed sends\tstored\tapplied/device\tmissing\tduplicates\tlongest pause\trecovery")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d..%d\t%d\t%d\t%v\t%v\n", r.fault, r.acked, r.failures(), r.stored,
			r.appliedMin, r.appliedMax, r.missing, r.duplicates, r.pause.Round(time.Millisecond), r.recovery.Round(time.Millisecond))
	}
	w.Flush()
	return b.String()
}

// storedEvent is an event row as Postgres holds it.
type storedEvent struct {
	conv, messageID string
	seq             uint64
}

// chaosWorld is the suite's conversations, who is in them and what is
// stored.
type chaosWorld struct {
	pool    *pgxpool.Pool
	members map[string][]*device // conversation id → its members' devices
	devices []*device
}

// stored reads every event of the conversations.
func (w *chaosWorld) stored(ctx context.Context) ([]storedEvent, error) {
	rows, err := w.pool.Query(ctx, `SELECT conversation_id::text, seq, coalesce(message_id::text, '') FROM events
		WHERE conversation_id = ANY($1::uuid[])`, slices.Collect(maps.Keys(w.members)))
	if err != nil {
		return nil, fmt.Errorf("read stored events: %w", err)
	}
	defer rows.Close()
	var evs []storedEvent
	for rows.Next() {
		var e storedEvent
		if err := rows.Scan(&e.conv, &e.seq, &e.messageID); err != nil {
			return nil, fmt.Errorf("read stored events: %w", err)
		}
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stored events: %w", err)
	}
	return evs, nil
}

// gaps counts the stored events some member's device has not applied, and
// the events a device applied more than once.
func (w *chaosWorld) gaps(stored []storedEvent) (missing, duplicates int) {
	for _, e := range stored {
		for _, d := range w.members[e.conv] {
			if !slices.Contains(d.seqs(e.conv), e.seq) {
				missing++
				break
			}
		}
	}
	for conv, ds := range w.members {
		for _, d := range ds {
			seen := map[uint64]bool{}
			for _, s := range d.seqs(conv) {
				if seen[s] {
					duplicates++
				}
				seen[s] = true
			}
		}
	}
	return missing, duplicates
}

// applied is how many events each device has applied.
func (w *chaosWorld) applied() []int {
	n := make([]int, len(w.devices))
	for i, d := range w.devices {
		d.mu.Lock()
		n[i] = len(d.appliedAt)
		d.mu.Unlock()
	}
	return n
}

// longestPause is the longest time between from and to that some device
// went without applying an event.
func (w *chaosWorld) longestPause(from, to time.Time) time.Duration {
	var worst time.Duration
	for _, d := range w.devices {
		d.mu.Lock()
		prev := from
		for _, at := range d.appliedAt {
			if at.Before(from) {
				continue
			}
			if at.After(to) {
				break
			}
			worst = max(worst, at.Sub(prev))
			prev = at
		}
		d.mu.Unlock()
		worst = max(worst, to.Sub(prev))
	}
	return worst
}

// chaosFault is one fault of the suite: inject breaks something, restore
// repairs it, and check asserts what the fault must not have caused.
type chaosFault struct {
	name    string
	within  time.Duration // recovery bound
	inject  func(t *testing.T)
	restore func(t *testing.T)
	check   func(t *testing.T, restored time.Time)
}

// TestChaos runs presence, chat and two edges as separate processes on a
// throwaway Redis and Postgres, keeps SDK clients sending in three groups
// and four 1:1s, and breaks one thing after another under the load: chat,
// presence, Redis and Postgres go down and come back, an edge is stopped,
// another killed. Sending stops before each repair, so no later message
// reveals a hole: every device must then hold every stored event of its
// conversations, once each and in order, within the fault's bound, and
// every acked message must be stored. It logs a table of what each fault
// did.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a redis-server, a Postgres cluster and four processes")
	}
	rds := redistest.StartServer(t)
	pg := pgtest.StartServer(t)
	c := newClusterWith(t, pg.URL("postgres"), "redis://"+rds.Addr()+"/0")
	chatAddr, presAddr := freeAddr(t), freeAddr(t)
	startPresence := func() *proc {
		return c.startAt("presence", presAddr, "presence", "--chat-url", "http://"+chatAddr)
	}
	startChat := func() *proc { return c.startAt("chat", chatAddr, "chat", "--presence-url", "http://"+presAddr) }
	pres, chat := startPresence(), startChat()
	// Edge 2 also serves grpc-go clients on its second listener.
	edgeAddrs, edge2GRPC := []string{freeAddr(t), freeAddr(t)}, freeAddr(t)
	edgeIDs := []string{"edge1", "edge2"}
	startEdge := func(i int) *proc {
		args := []string{"--chat-url", chat.url(), "--presence-url", pres.url(), "--edge-id", edgeIDs[i]}
		if i == 1 {
			args = append(args, "--edge-grpc-addr", edge2GRPC)
		}
		return c.startAt(edgeIDs[i], edgeAddrs[i], "edge", args...)
	}
	edges := []*proc{startEdge(0), startEdge(1)}

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// Users straight into the database (argon2id registrations are slow),
	// three groups of eight and four 1:1s, one device each, alternating
	// between the edges, every fourth on edge 2's grpc-go listener.
	users := provision(t, pool, c, chat.url(), 26)
	w := &chaosWorld{pool: pool, members: map[string][]*device{}}
	for i, u := range users {
		first, other := connectEdge(edges[0].url()), connectEdge(edges[1].url())
		if i%2 == 1 {
			first, other = other, first
			if i%4 == 3 {
				first = grpcEdge(t, edge2GRPC)
			}
		}
		w.devices = append(w.devices, newDevice(t, fmt.Sprintf("%s@%s", u.name, edgeIDs[i%2]), u, first, other))
	}
	var senders []chaosSender
	for g := range 3 {
		owner := 8 * g
		group := newGroup(t, users[owner], users[owner+1:owner+8]...)
		w.members[group] = w.devices[owner : owner+8]
		senders = append(senders, chaosSender{w.devices[owner], group, 50 * time.Millisecond},
			chaosSender{w.devices[owner+3], group, 50 * time.Millisecond})
	}
	for _, pair := range [][2]int{{24, 25}, {0, 8}, {9, 16}, {17, 25}} {
		direct := newDirect(t, users[pair[0]], users[pair[1]])
		w.members[direct] = []*device{w.devices[pair[0]], w.devices[pair[1]]}
		senders = append(senders, chaosSender{w.devices[pair[0]], direct, 50 * time.Millisecond})
	}

	// How presence sees users[1], as users[0] asks it.
	presence := presencev1connect.NewPresenceServiceClient(h2c(), pres.url(), bearer(users[0].token))
	shownOnline := func() bool {
		res, err := presence.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: []string{users[1].id}})
		return err == nil && len(res.GetPresences()) == 1 && res.GetPresences()[0].GetStatus() == presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE
	}
	waitFor(t, 10*time.Second, "users[1] shown online", shownOnline)

	// onEdge lists the devices whose session is on edge i; reconnected
	// fails for those that did not leave it for the other edge.
	onEdge := func(i int) []*device {
		var on []*device
		for _, d := range w.devices {
			if d.edgeID() == edgeIDs[i] {
				on = append(on, d)
			}
		}
		return on
	}
	reconnected := func(t *testing.T, from int, moved []*device) {
		if len(moved) == 0 {
			t.Errorf("no device was on %s when it went down", edgeIDs[from])
		}
		for _, d := range moved {
			if d.edgeID() == edgeIDs[from] {
				t.Errorf("%s is still on %s (%+v)", d.name, edgeIDs[from], d.client.Stats())
			}
		}
	}
	var sessions []int64 // each device's sessions before a fault
	var leaving []*device
	faults := []chaosFault{
		{name: "SIGKILL chat", within: recoveryLimit,
			inject:  func(*testing.T) { chat.kill() },
			restore: func(*testing.T) { chat = startChat() }},
		{name: "SIGKILL presence", within: repairLimit,
			inject:  func(*testing.T) { pres.kill() },
			restore: func(*testing.T) { pres = startPresence() }},
		{name: "SIGKILL Redis, restart empty", within: repairLimit,
			inject:  func(*testing.T) { rds.Stop() },
			restore: func(*testing.T) { rds.Start() },
			check: func(t *testing.T, restored time.Time) {
				// The edges registered their sessions again at once: a user
				// shows online without waiting for the next renewal.
				waitFor(t, repairLimit, "users[1] shown online again", shownOnline)
				if took := time.Since(restored); took > repairLimit {
					t.Errorf("users[1] shown online %v after Redis came back", took.Round(time.Millisecond))
				}
				for i, d := range w.devices {
					if d.client.Stats().Sessions != sessions[i] {
						t.Errorf("%s reconnected: %+v; its edge should have kept the session", d.name, d.client.Stats())
					}
				}
			}},
		{name: "Postgres stop -m immediate", within: recoveryLimit,
			inject:  func(*testing.T) { pg.Stop() },
			restore: func(*testing.T) { pg.Start() }},
		{name: "SIGTERM edge1", within: recoveryLimit,
			inject: func(t *testing.T) {
				leaving = onEdge(0)
				if err := edges[0].cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			},
			restore: func(t *testing.T) {
				select {
				case <-edges[0].done:
				case <-time.After(20 * time.Second):
					t.Fatalf("edge1 still draining 20s after SIGTERM: %s", edges[0].stderr.String())
				}
				edges[0] = startEdge(0)
			},
			check: func(t *testing.T, _ time.Time) { reconnected(t, 0, leaving) }},
		{name: "SIGKILL edge2", within: recoveryLimit,
			inject: func(*testing.T) {
				leaving = onEdge(1)
				edges[1].kill()
			},
			restore: func(*testing.T) { edges[1] = startEdge(1) },
			check:   func(t *testing.T, _ time.Time) { reconnected(t, 1, leaving) }},
	}

	var table []chaosRow
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			before, err := w.stored(ctx)
			if err != nil {
				t.Fatal(err)
			}
			appliedBefore := w.applied()
			sessions = sessions[:0]
			for _, d := range w.devices {
				sessions = append(sessions, d.client.Stats().Sessions)
			}
			tally := &chaosTally{failed: map[connect.Code]int{}, example: map[connect.Code]error{}}
			sendCtx, stopSending := context.WithCancel(ctx)
			sending := sendSteadily(sendCtx, senders, tally)
			time.Sleep(300 * time.Millisecond) // under load before the fault
			faulted := time.Now()
			f.inject(t)
			time.Sleep(2 * time.Second)
			stopSending()
			sending()
			stopped := time.Now()
			f.restore(t)
			restored := time.Now()

			// Converged: every stored event on every member's device.
			var stored []storedEvent
			missing := -1
			for deadline := restored.Add(f.within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if stored, err = w.stored(ctx); err != nil {
					continue // the pool's connections may predate a Postgres restart
				}
				if missing, _ = w.gaps(stored); missing == 0 {
					break
				}
			}
			recovery := time.Since(restored)
			if stored, err = w.stored(ctx); err != nil {
				t.Fatal(err)
			}
			missing, duplicates := w.gaps(stored)
			row := chaosRow{fault: f.name, acked: len(tally.acked), abandoned: tally.abandoned, failed: tally.failed,
				stored: len(stored) - len(before), missing: missing, duplicates: duplicates,
				pause: w.longestPause(faulted, stopped), recovery: recovery}
			row.appliedMin, row.appliedMax = math.MaxInt, 0
			for i, n := range w.applied() {
				row.appliedMin, row.appliedMax = min(row.appliedMin, n-appliedBefore[i]), max(row.appliedMax, n-appliedBefore[i])
			}
			table = append(table, row)
			t.Log(chaosTable(row) + statsLine(w.devices...))

			// A dependency's outage is unavailable to the edge, which the
			// SDK resends on: no send fails while it lasts.
			for code, err := range tally.example {
				t.Errorf("%d sends failed with %v (first: %v); the SDK resends only on unavailable, deadline_exceeded and aborted", tally.failed[code], code, err)
			}
			if missing > 0 {
				t.Errorf("%d stored events never reached some member's device within %v of the repair", missing, f.within)
			}
			// Whatever reached them, once each and in order.
			last := map[string]uint64{}
			for _, e := range stored {
				last[e.conv] = max(last[e.conv], e.seq)
			}
			for conv, ds := range w.members {
				for _, d := range ds {
					if got := d.seqs(conv); !slices.Equal(got, upTo(last[conv])) {
						t.Errorf("%s holds %s of %s, want seqs 1..%d exactly once in order", d.name, describe(got), conv, last[conv])
					}
				}
			}
			byID := map[string]storedEvent{}
			for _, e := range stored {
				byID[e.messageID] = e
			}
			for _, m := range tally.acked {
				if e, ok := byID[m.GetMessageId()]; !ok || e.conv != m.GetConversationId() || e.seq != m.GetSeq() {
					t.Errorf("acked message %s (seq %d of %s) is not stored as acked: %+v", m.GetMessageId(), m.GetSeq(), m.GetConversationId(), e)
				}
			}
			if f.check != nil {
				f.check(t, restored)
			}
		})
	}
	t.Log(chaosTable(table...))
}
