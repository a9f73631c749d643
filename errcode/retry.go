package errcode

import (
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
)

// RetryLater is the refusal of a caller over a limit: resource_exhausted,
// with a RetryInfo saying when the limit lets the call through again, which
// the SDK waits for before it retries. what says which limit, e.g. "too many
// logins".
func RetryLater(what string, after time.Duration) *connect.Error {
	err := connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("%s; retry in %v", what, (after+time.Second-1).Truncate(time.Second)))
	// Marshalling a RetryInfo cannot fail.
	if detail, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)}); derr == nil {
		err.AddDetail(detail)
	}
	return err
}
