package bus_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/bus"
	"github.com/wagglechat/waggle/internal/redistest"
)

func TestRedisResubscribesAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a redis-server")
	}
	srv := redistest.StartServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	resubscribed := make(chan bus.Resubscribed, 10)
	b := bus.NewRedis(client, "test:", testLogger(t), bus.RedisConfig{
		OnResubscribe: func(r bus.Resubscribed) { resubscribed <- r },
		// One connection, so the channel's interruption is reported once.
		Connections: 1,
	})
	defer b.Close()

	in := newInbox()
	subscribe(t, b, "edge:1", in.handle)
	publish(t, b, "edge:1", "before")
	in.expect(t, "before")

	srv.Stop()
	// Subscribing while Redis is down fails and leaves nothing behind.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	_, err := b.Subscribe(ctx, func(string, []byte) {}, "edge:2")
	cancel()
	if err == nil {
		t.Fatal("Subscribe with Redis down succeeded")
	}
	if len(resubscribed) != 0 {
		t.Fatal("OnResubscribe called before Redis came back")
	}

	stopped := time.Now()
	srv.Start()
	select {
	case r := <-resubscribed:
		if !slices.Equal(r.Channels, []string{"edge:1"}) {
			t.Errorf("resubscribed %q, want the channel that was subscribed", r.Channels)
		}
		if r.Since.After(stopped) || time.Since(r.Since) > time.Minute {
			t.Errorf("messages lost since %v, want a time shortly before Redis stopped at %v", r.Since, stopped)
		}
	case <-time.After(3 * waitFor):
		t.Fatal("OnResubscribe not called after Redis restarted")
	}
	publish(t, b, "edge:1", "after")
	in.expect(t, "after")

	in2 := newInbox()
	subscribe(t, b, "edge:2", in2.handle)
	publish(t, b, "edge:2", "later")
	in2.expect(t, "later")
	in.expectEmpty(t)
}

// BenchmarkRedisPublish publishes 200-byte payloads to one subscriber and
// waits until all have arrived, so ns/op is the delivered throughput.
func BenchmarkRedisPublish(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			client, prefix := redistest.New(b)
			rb := bus.NewRedis(client, prefix, nil, bus.RedisConfig{})
			defer rb.Close()
			got := make(chan struct{}, 1)
			var n atomic.Int64
			subs, err := rb.Subscribe(b.Context(), func(string, []byte) {
				if n.Add(1) == int64(b.N) {
					got <- struct{}{}
				}
			}, "bench")
			if err != nil {
				b.Fatal(err)
			}
			defer subs[0].Close()
			payload := make([]byte, 200)
			msgs := make([]bus.Message, 0, batch)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := range b.N {
				if batch == 1 {
					if err := rb.Publish(b.Context(), "bench", payload); err != nil {
						b.Fatal(err)
					}
					continue
				}
				msgs = append(msgs, bus.Message{Channel: "bench", Payload: payload})
				if len(msgs) == batch || i == b.N-1 {
					if err := rb.PublishBatch(b.Context(), msgs); err != nil {
						b.Fatal(err)
					}
					msgs = msgs[:0]
				}
			}
			select {
			case <-got:
			case <-time.After(30 * time.Second):
				b.Fatalf("delivered %d of %d", n.Load(), b.N)
			}
		})
	}
}
