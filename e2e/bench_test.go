package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagglechat/waggle/client"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// BenchmarkSendDeliver measures messages stored and delivered end to end
// through one `waggle serve`: groups of 10 online members, every member
// sending over its edge stream. Reported: sends/s (acked, i.e. stored) and
// deliveries/s (events applied by recipients' SDKs).
//
//	go test ./e2e -run '^$' -bench SendDeliver -benchtime 5000x
func BenchmarkSendDeliver(b *testing.B) {
	const groups, size = 10, 10
	c := newCluster(b)
	srv := c.start("serve", "serve")
	ctx := context.Background()

	var delivered atomic.Int64
	devices := make([][]*client.Client, groups)
	convs := make([]string, groups)
	for g := range groups {
		var members []*user
		for i := range size {
			members = append(members, register(b, srv.url(), fmt.Sprintf("g%du%d", g, i)))
		}
		ids := make([]string, 0, size-1)
		for _, m := range members[1:] {
			ids = append(ids, m.id)
		}
		res, err := members[0].convs.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: "bench", MemberUserIds: ids})
		if err != nil {
			b.Fatal(err)
		}
		convs[g] = res.GetConversation().GetConversationId()
		for _, m := range members {
			cl, err := client.New(client.Config{
				Dialers: []client.Dialer{client.ConnectDialer(h2c(), srv.url())},
				Token:   func(context.Context) (string, error) { return m.token, nil },
				OnEvent: func(ev *chatv1.Event) {
					if ev.GetMessage() != nil {
						delivered.Add(1)
					}
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			go cl.Run(runCtx)
			b.Cleanup(cancel)
			if err := cl.WaitConnected(ctx); err != nil {
				b.Fatal(err)
			}
			devices[g] = append(devices[g], cl)
		}
	}

	content := &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: "a benchmark message of a typical length, about eighty bytes in all."}}}
	var next atomic.Int64
	delivered.Store(0)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range groups {
		for _, cl := range devices[g] {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if _, err := cl.Send(ctx, convs[g], content); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	sent := time.Since(start)
	want := int64(b.N) * size // every member's device, the sender's own copy included
	deadline := time.Now().Add(60 * time.Second)
	for delivered.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	all := time.Since(start)
	b.StopTimer()
	if got := delivered.Load(); got != want {
		b.Fatalf("delivered %d, want %d", got, want)
	}
	b.ReportMetric(float64(b.N)/sent.Seconds(), "sends/s")
	b.ReportMetric(float64(want)/all.Seconds(), "deliveries/s")
}
