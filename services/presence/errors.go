package presence

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/errcode"
)

// maxIDLen bounds every id; ids are UUIDs or node names.
const maxIDLen = 256

func invalidArgument(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func checkID(field, v string) error {
	switch {
	case v == "":
		return invalidArgument("%s is empty", field)
	case len(v) > maxIDLen:
		return invalidArgument("%s is longer than %d bytes", field, maxIDLen)
	}
	return nil
}

// checkUserIDs validates a list of at most limit user ids and returns it
// without duplicates, in first-seen order.
func checkUserIDs(ids []string, limit int) ([]string, error) {
	if len(ids) > limit {
		return nil, invalidArgument("at most %d user_ids per call, got %d", limit, len(ids))
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for i, id := range ids {
		if err := checkID(fmt.Sprintf("user_ids[%d]", i), id); err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// storeError is for internal callers (edges, the chat service), who may see
// the cause.
func storeError(ctx context.Context, op string, err error) error {
	return connect.NewError(errcode.Of(ctx, err), fmt.Errorf("presence: %s: %w", op, err))
}
