package edge

import (
	"fmt"
	"slices"
	"testing"
)

func TestOrder(t *testing.T) {
	type step struct {
		op   string // offer, learn, skip
		seq  uint64
		want []uint64
	}
	tests := []struct {
		name  string
		steps []step
		next  uint64
		held  int
	}{
		{"in order", []step{{"offer", 5, []uint64{5}}, {"offer", 6, []uint64{6}}}, 7, 0},
		{"early items wait for their predecessor", []step{
			{"offer", 1, []uint64{1}}, {"offer", 3, nil}, {"offer", 4, nil}, {"offer", 2, []uint64{2, 3, 4}}}, 5, 0},
		{"repeats are dropped, held or not", []step{
			{"offer", 1, []uint64{1}}, {"offer", 1, nil}, {"offer", 3, nil}, {"offer", 3, nil}, {"offer", 2, []uint64{2, 3}}}, 4, 0},
		{"skip gives up on the hole", []step{
			{"offer", 1, []uint64{1}}, {"offer", 4, nil}, {"offer", 6, nil}, {"skip", 0, []uint64{4}}}, 5, 1},
		{"learn moves on and drops what it covers", []step{
			{"offer", 1, []uint64{1}}, {"offer", 3, nil}, {"offer", 9, nil}, {"learn", 9, []uint64{9}}, {"offer", 5, nil}}, 10, 0},
		{"learn never moves back", []step{{"offer", 7, []uint64{7}}, {"learn", 3, nil}, {"offer", 8, []uint64{8}}}, 9, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o order[uint64]
			for i, s := range tt.steps {
				var got []uint64
				switch s.op {
				case "offer":
					got = o.offer(s.seq, s.seq)
				case "learn":
					got = o.learn(s.seq)
				case "skip":
					got = o.skip()
				}
				if !slices.Equal(got, s.want) {
					t.Fatalf("step %d (%s %d): got %v, want %v", i, s.op, s.seq, got, s.want)
				}
			}
			if o.next != tt.next || len(o.held) != tt.held {
				t.Fatalf("next %d, %d held; want %d, %d", o.next, len(o.held), tt.next, tt.held)
			}
		})
	}
}

func TestOrderGap(t *testing.T) {
	var o order[uint64]
	if _, _, ok := o.gap(); ok {
		t.Fatal("an empty order has a gap")
	}
	o.offer(1, 1)
	o.offer(7, 7)
	o.offer(4, 4)
	from, to, ok := o.gap()
	if !ok || from != 2 || to != 3 {
		t.Fatalf("gap %d..%d (%v), want 2..3", from, to, ok)
	}
	if got := fmt.Sprint(o.offer(2, 2), o.offer(3, 3)); got != "[2] [3 4]" {
		t.Fatalf("filling the gap released %s, want [2] [3 4]", got)
	}
}
