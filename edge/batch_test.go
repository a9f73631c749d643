package edge

import (
	"context"
	"testing"
	"time"
)

// A caller that led a call does not go on flushing the items that arrived
// meanwhile: it returns with its own result and the next caller leads.
func TestBatcherLeaderHandsOff(t *testing.T) {
	entered := make(chan int, 2)
	release := map[int]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})}
	b := newBatcher(10, time.Minute, func(ctx context.Context, ins []int) ([]int, error) {
		entered <- ins[0]
		<-release[ins[0]]
		return ins, nil
	})
	defer close(release[2])
	first := make(chan int, 1)
	go func() { out, _ := b.do(1); first <- out }()
	if got := <-entered; got != 1 {
		t.Fatalf("first call for %d", got)
	}
	second := make(chan int, 1)
	go func() { out, _ := b.do(2); second <- out }()
	waitUntil(t, "the second item to queue", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.pending) == 1
	})
	close(release[1])
	// The second call stays blocked: the first caller returns anyway.
	select {
	case out := <-first:
		if out != 1 {
			t.Fatalf("first caller got %d", out)
		}
	case <-time.After(waitTime):
		t.Fatal("the first caller is still flushing the second item's batch")
	}
	if got := <-entered; got != 2 {
		t.Fatalf("second call for %d", got)
	}
}

func TestBatcherGroupsAndAnswersEach(t *testing.T) {
	tests := []struct {
		name  string
		max   int
		items int
	}{
		{"one", 10, 1},
		{"many under max", 100, 50},
		{"many over max", 3, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatcher(tt.max, time.Minute, func(ctx context.Context, ins []int) ([]int, error) {
				if len(ins) > tt.max {
					t.Errorf("batch of %d, max %d", len(ins), tt.max)
				}
				out := make([]int, len(ins))
				for i, in := range ins {
					out[i] = in * 2
				}
				return out, nil
			})
			results := make(chan [2]int, tt.items)
			for i := range tt.items {
				go func() { out, _ := b.do(i); results <- [2]int{i, out} }()
			}
			for range tt.items {
				select {
				case r := <-results:
					if r[1] != 2*r[0] {
						t.Fatalf("item %d got %d", r[0], r[1])
					}
				case <-time.After(waitTime):
					t.Fatal("an item was never answered")
				}
			}
		})
	}
}
