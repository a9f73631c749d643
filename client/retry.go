package client

import (
	"errors"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// RetryDelay returns how long the server asked the caller to wait before
// trying again: the retry_delay of the google.rpc.RetryInfo detail of a
// resource_exhausted error (Waggle's rate limits attach one). It is false
// for any other error.
func RetryDelay(err error) (time.Duration, bool) {
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeResourceExhausted {
		return 0, false
	}
	for _, d := range cerr.Details() {
		v, err := d.Value()
		if info, ok := v.(*errdetails.RetryInfo); err == nil && ok {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
