package edge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bus"
)

// stepSubscribes makes te's presence subscriptions, one call at a time,
// announce themselves on entered and wait for release; each call fails if
// its fail is set.
func stepSubscribes(te *testEdge, fail ...bool) (entered chan int, release []chan struct{}) {
	entered = make(chan int, len(fail))
	release = make([]chan struct{}, len(fail))
	for i := range release {
		release[i] = make(chan struct{})
	}
	orig := te.subs.call
	n := 0
	te.subs.call = func(ctx context.Context, channels []string) ([]bus.Subscription, error) {
		i := n // calls are one at a time: one caller leads
		n++
		entered <- i
		<-release[i]
		if fail[i] {
			return nil, errors.New("bus down")
		}
		return orig(ctx, channels)
	}
	return entered, release
}

// watchOf returns the watch of user, if any, and whether its subscription
// is confirmed.
func watchOf(te *testEdge, user string) (*watch, bool) {
	te.watchers.mu.Lock()
	defer te.watchers.mu.Unlock()
	wt := te.watchers.users[user]
	return wt, wt != nil && wt.sub != nil
}

// A second follower of a user whose subscription is being set up returns
// only once it is confirmed, so its snapshot misses no change.
func TestFollowWaitsForTheSubscriptionInSetUp(t *testing.T) {
	te := newTestEdge(t, testConfig())
	entered, release := stepSubscribes(te, false)
	first, second := &session{}, &session{}
	go te.watchers.follow(first, []string{"star"})
	<-entered
	time.AfterFunc(50*time.Millisecond, func() { close(release[0]) })
	te.watchers.follow(second, []string{"star"})
	if _, confirmed := watchOf(te, "star"); !confirmed {
		t.Fatal("follow returned before the subscription was confirmed")
	}
}

// A failed subscription drops only the entry its follow made, not one
// another session made after every follower of the first had left.
func TestFailedFollowKeepsAnotherSessionsEntry(t *testing.T) {
	te := newTestEdge(t, testConfig())
	entered, release := stepSubscribes(te, true, false)
	first, second := &session{}, &session{}
	firstDone, secondDone := make(chan struct{}), make(chan struct{})
	go func() { te.watchers.follow(first, []string{"star"}); close(firstDone) }()
	<-entered
	te.watchers.unfollow(first, []string{"star"})
	go func() { te.watchers.follow(second, []string{"star"}); close(secondDone) }()
	waitUntil(t, "the second subscription to queue", func() bool {
		te.subs.mu.Lock()
		defer te.subs.mu.Unlock()
		return len(te.subs.pending) == 1
	})
	close(release[0]) // the first fails while the second is in flight
	<-firstDone
	<-entered
	close(release[1])
	<-secondDone
	wt, confirmed := watchOf(te, "star")
	if wt == nil || !confirmed {
		t.Fatalf("the second session's entry: %v, confirmed %v", wt, confirmed)
	}
	if _, ok := wt.sessions[second]; !ok || len(wt.sessions) != 1 {
		t.Fatalf("entry followed by %v, want the second session only", wt.sessions)
	}
	if !te.bus.subscribed(bus.PresenceChannel("star")) {
		t.Fatal("the edge does not listen to the followed user's channel")
	}
}
