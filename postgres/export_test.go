package postgres

import (
	"context"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/services/chat"
)

// Call is one AppendMessages call, for tests that combine calls
// themselves rather than wait for concurrent ones to meet in the queue.
type Call struct {
	Conv uuid.UUID
	Msgs []chat.NewMessage
}

func appendCalls(calls []Call) []*appendCall {
	out := make([]*appendCall, len(calls))
	for i, c := range calls {
		out[i] = &appendCall{conv: c.Conv, msgs: c.Msgs, done: make(chan struct{})}
	}
	return out
}

// StoreTogether stores calls as one transaction of the send queue would,
// splitting it if it fails, and returns each call's outcome.
func StoreTogether(s *ChatStore, calls []Call) ([][]chat.StoredMessage, []error) {
	cs := appendCalls(calls)
	s.storeCalls(cs)
	outs, errs := make([][]chat.StoredMessage, len(cs)), make([]error, len(cs))
	for i, c := range cs {
		outs[i], errs[i] = c.out, c.err
	}
	return outs, errs
}

// AppendTogether is one combined transaction of calls, not split on
// failure.
func AppendTogether(ctx context.Context, s *ChatStore, calls []Call) error {
	return s.appendBatch(ctx, appendCalls(calls))
}
