package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bus"
	"github.com/wagglechat/waggle/internal/redistest"
)

const waitFor = 5 * time.Second

// implementations runs every behaviour test against both buses.
var implementations = []struct {
	name string
	new  func(t *testing.T) bus.Bus
}{
	{"memory", func(t *testing.T) bus.Bus {
		b := bus.NewMemory()
		t.Cleanup(func() { b.Close() })
		return b
	}},
	{"redis", func(t *testing.T) bus.Bus {
		client, prefix := redistest.New(t)
		b := bus.NewRedis(client, prefix, testLogger(t), bus.RedisConfig{})
		t.Cleanup(func() { b.Close() })
		return b
	}},
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// inbox collects what a handler receives.
type inbox chan string

func newInbox() inbox { return make(inbox, 1000) }

func (in inbox) handle(_ string, p []byte) { in <- string(p) }

func (in inbox) expect(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	timeout := time.After(waitFor)
	for len(got) < len(want) {
		select {
		case p := <-in:
			got = append(got, p)
		case <-timeout:
			t.Fatalf("got %q before timeout, want %q", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func (in inbox) expectEmpty(t *testing.T) {
	t.Helper()
	select {
	case p := <-in:
		t.Fatalf("unexpected message %q", p)
	default:
	}
}

func subscribe(t *testing.T, b bus.Bus, channel string, handle bus.Handler) bus.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	s, err := b.Subscribe(ctx, handle, channel)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", channel, err)
	}
	if len(s) != 1 {
		t.Fatalf("Subscribe(%q) returned %d subscriptions", channel, len(s))
	}
	return s[0]
}

func publish(t *testing.T, b bus.Bus, channel, payload string) {
	t.Helper()
	if err := b.Publish(t.Context(), channel, []byte(payload)); err != nil {
		t.Fatalf("Publish(%q): %v", channel, err)
	}
}

func TestBus(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, b bus.Bus)
	}{
		{"delivers in publish order", func(t *testing.T, b bus.Bus) {
			in := newInbox()
			subscribe(t, b, "edge:1", in.handle)
			var want []string
			for i := range 100 {
				want = append(want, fmt.Sprint(i))
				publish(t, b, "edge:1", want[i])
			}
			in.expect(t, want...)
		}},
		{"fans out to every subscriber of a channel", func(t *testing.T, b bus.Bus) {
			in1, in2 := newInbox(), newInbox()
			subscribe(t, b, "c", in1.handle)
			subscribe(t, b, "c", in2.handle)
			publish(t, b, "c", "hi")
			in1.expect(t, "hi")
			in2.expect(t, "hi")
		}},
		{"keeps channels apart", func(t *testing.T, b bus.Bus) {
			in := newInbox()
			subscribe(t, b, "a", in.handle)
			publish(t, b, "b", "for b")
			publish(t, b, "a", "for a")
			in.expect(t, "for a")
			in.expectEmpty(t)
		}},
		{"stops delivering after Close", func(t *testing.T, b bus.Bus) {
			gone, stays := newInbox(), newInbox()
			s := subscribe(t, b, "c", gone.handle)
			subscribe(t, b, "c", stays.handle)
			publish(t, b, "c", "1")
			gone.expect(t, "1")
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			publish(t, b, "c", "2")
			// Both handlers of a channel run in one dispatch, so once the
			// remaining one has "2", the closed one would have had it too.
			stays.expect(t, "1", "2")
			gone.expectEmpty(t)
		}},
		{"subscribes again after the last subscriber left", func(t *testing.T, b bus.Bus) {
			first := newInbox()
			s := subscribe(t, b, "c", first.handle)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			second := newInbox()
			subscribe(t, b, "c", second.handle)
			publish(t, b, "c", "again")
			second.expect(t, "again")
			first.expectEmpty(t)
		}},
		{"ends subscribed when a channel is left and re-joined at once", func(t *testing.T, b bus.Bus) {
			for i := range 30 {
				s := subscribe(t, b, "c", func(string, []byte) {})
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				in := newInbox()
				again := subscribe(t, b, "c", in.handle)
				publish(t, b, "c", fmt.Sprint(i))
				in.expect(t, fmt.Sprint(i))
				if err := again.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"lets a handler close its own subscription", func(t *testing.T, b bus.Bus) {
			in := newInbox()
			var s bus.Subscription
			ready := make(chan struct{})
			s = subscribe(t, b, "c", func(ch string, p []byte) {
				<-ready
				in.handle(ch, p)
				s.Close()
			})
			close(ready)
			watcher := newInbox()
			subscribe(t, b, "c", watcher.handle)
			publish(t, b, "c", "1")
			publish(t, b, "c", "2")
			watcher.expect(t, "1", "2")
			in.expect(t, "1")
			in.expectEmpty(t)
		}},
		{"publishes a batch in order", func(t *testing.T, b bus.Bus) {
			in1, in2 := newInbox(), newInbox()
			subscribe(t, b, "edge:1", in1.handle)
			subscribe(t, b, "edge:2", in2.handle)
			var msgs []bus.Message
			for i := range 10 {
				msgs = append(msgs,
					bus.Message{Channel: "edge:1", Payload: fmt.Appendf(nil, "1-%d", i)},
					bus.Message{Channel: "edge:2", Payload: fmt.Appendf(nil, "2-%d", i)})
			}
			if err := b.PublishBatch(t.Context(), msgs); err != nil {
				t.Fatalf("PublishBatch: %v", err)
			}
			in1.expect(t, "1-0", "1-1", "1-2", "1-3", "1-4", "1-5", "1-6", "1-7", "1-8", "1-9")
			in2.expect(t, "2-0", "2-1", "2-2", "2-3", "2-4", "2-5", "2-6", "2-7", "2-8", "2-9")
			if err := b.PublishBatch(t.Context(), nil); err != nil {
				t.Fatalf("empty PublishBatch: %v", err)
			}
		}},
		{"subscribes many channels in one call and names each to the handler", func(t *testing.T, b bus.Bus) {
			got := make(chan string, 100)
			var channels []string
			for i := range 50 {
				channels = append(channels, fmt.Sprint("conv:", i))
			}
			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			subs, err := b.Subscribe(ctx, func(ch string, p []byte) { got <- ch + "=" + string(p) }, channels...)
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			if len(subs) != len(channels) {
				t.Fatalf("%d subscriptions for %d channels", len(subs), len(channels))
			}
			for _, ch := range channels {
				publish(t, b, ch, "x")
			}
			var want, seen []string
			for _, ch := range channels {
				want = append(want, ch+"=x")
			}
			timeout := time.After(waitFor)
			for len(seen) < len(want) {
				select {
				case m := <-got:
					seen = append(seen, m)
				case <-timeout:
					t.Fatalf("got %d of %d messages", len(seen), len(want))
				}
			}
			slices.Sort(seen)
			slices.Sort(want)
			if !slices.Equal(seen, want) {
				t.Fatalf("got %q, want %q", seen, want)
			}
			// Closing one channel's subscription leaves the others.
			if err := subs[0].Close(); err != nil {
				t.Fatal(err)
			}
			publish(t, b, channels[0], "gone")
			publish(t, b, channels[1], "stays")
			select {
			case m := <-got:
				if m != channels[1]+"=stays" {
					t.Fatalf("got %q after closing %s, want only %s's message", m, channels[0], channels[1])
				}
			case <-time.After(waitFor):
				t.Fatal("the other channels stopped after one was closed")
			}
		}},
		{"leaves nothing subscribed when Subscribe fails", func(t *testing.T, b bus.Bus) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := b.Subscribe(ctx, func(string, []byte) {}, "a", "b"); err == nil {
				// The in-memory bus never waits, so it may succeed.
				return
			}
			in := newInbox()
			subscribe(t, b, "a", in.handle)
			publish(t, b, "a", "1")
			in.expect(t, "1")
		}},
		{"does not share the caller's buffer", func(t *testing.T, b bus.Bus) {
			in := newInbox()
			subscribe(t, b, "c", in.handle)
			buf := []byte("before")
			if err := b.Publish(t.Context(), "c", buf); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			copy(buf, "after!")
			in.expect(t, "before")
		}},
		{"rejects calls once closed", func(t *testing.T, b bus.Bus) {
			if err := b.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := b.Publish(t.Context(), "c", []byte("x")); !errors.Is(err, bus.ErrClosed) {
				t.Errorf("Publish after Close: got %v, want ErrClosed", err)
			}
			if _, err := b.Subscribe(t.Context(), func(string, []byte) {}, "c"); !errors.Is(err, bus.ErrClosed) {
				t.Errorf("Subscribe after Close: got %v, want ErrClosed", err)
			}
		}},
	}
	for _, impl := range implementations {
		t.Run(impl.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.run(t, impl.new(t))
				})
			}
		})
	}
}

func TestRedisPrefix(t *testing.T) {
	client, prefix := redistest.New(t)
	mine := bus.NewRedis(client, prefix+"a:", testLogger(t), bus.RedisConfig{})
	defer mine.Close()
	other := bus.NewRedis(client, prefix+"b:", testLogger(t), bus.RedisConfig{})
	defer other.Close()

	in, otherIn := newInbox(), newInbox()
	subscribe(t, mine, "c", in.handle)
	subscribe(t, other, "c", otherIn.handle)

	// The Redis channel is the prefixed name.
	if err := client.Publish(t.Context(), prefix+"a:c", "raw").Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, other, "c", "other")
	publish(t, mine, "c", "mine")
	in.expect(t, "raw", "mine")
	otherIn.expect(t, "other")
	otherIn.expectEmpty(t)
}
