package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/services/chat"
)

// BenchmarkSendMessage sends through the chat core and this store as
// 100 1:1 pairs do through the edge: each of the 200 members has one send
// in flight at a time (an edge session's commands are serial). No edge,
// no bus: the CPU profile is the send path from SendMessage to commit.
// Reported: sends/s, Postgres transactions per send and, where /proc
// shows the database's backends (Postgres on this machine), their CPU
// per send.
//
//	go test ./postgres -run '^$' -bench SendMessage -benchtime 20000x -cpuprofile /tmp/send.prof
func BenchmarkSendMessage(b *testing.B) {
	const pairs = 100
	db := pgtest.New(b)
	store := postgres.NewChatStore(db)
	svc := chat.New(chat.Config{SendRate: 1e9, SendBurst: 1e9}, store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	type sender struct {
		ctx  context.Context
		conv string
	}
	var senders []sender
	for range pairs {
		a, bb := uuid.New(), uuid.New()
		var conv uuid.UUID
		if err := store.InTx(ctx, func(tx chat.Tx) error {
			var err error
			conv, _, err = tx.CreateDirect(ctx, uuid.New(), a, bb)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		for _, u := range []uuid.UUID{a, bb} {
			senders = append(senders, sender{auth.WithIdentity(ctx, auth.Identity{UserID: u.String(), DeviceID: uuid.NewString()}), conv.String()})
		}
	}
	content := &chatv1.MessageContent{Body: &chatv1.MessageContent_Custom{Custom: &chatv1.Custom{Type: "bench", Data: make([]byte, 200)}}}
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	pgCPU := backendCPU(b, db)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() {
			for range work {
				if _, err := svc.SendMessage(s.ctx, &chatv1.SendMessageRequest{ConversationId: s.conv, ClientMsgId: uuid.NewString(), Content: content}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if used := backendCPU(b, db) - pgCPU; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "pg-cpu-µs/send")
	}
	var txs int
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT xid) FROM events WHERE kind = 1`).Scan(&txs); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
	b.ReportMetric(float64(txs)/float64(b.N), "txs/send")
}

// backendCPU sums the CPU time the backends of db's database have used,
// read from /proc; 0 if it cannot be read.
func backendCPU(b *testing.B, db *pgxpool.Pool) time.Duration {
	rows, err := db.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0
		}
		// Fields after the parenthesised command: utime and stime are the
		// 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, s := range f[11:13] {
			n, _ := strconv.ParseInt(s, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
}
