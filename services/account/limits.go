package account

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wagglechat/waggle/ratelimit"
)

// perMinute returns a limiter of n calls a minute in bursts of n (def when n
// is zero), or nil for no limit when n is negative.
func perMinute(n, def int) *ratelimit.Limiter {
	if n == 0 {
		n = def
	}
	if n < 0 {
		return nil
	}
	return ratelimit.New(float64(n)/60, n)
}

// limit takes a token of key's bucket in l (nil: no limit). A refusal is
// resource_exhausted with a RetryInfo saying when the bucket has a token
// again, which the SDK waits for before it retries.
func limit(l *ratelimit.Limiter, key, what string) error {
	if l == nil {
		return nil
	}
	ok, after := l.Take(key)
	if ok {
		return nil
	}
	err := connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("too many %s; retry in %v", what, (after+time.Second-1).Truncate(time.Second)))
	// Marshalling a RetryInfo cannot fail.
	if detail, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)}); derr == nil {
		err.AddDetail(detail)
	}
	return err
}

// sourceAddr names the client of a call for limits: the TCP peer's IP,
// with an IPv6 address cut to its /64. There is no trusted-proxy setting,
// so X-Forwarded-For is ignored: a client could write anything there.
func sourceAddr(ctx context.Context) string {
	call, ok := connect.CallInfoForHandlerContext(ctx)
	if !ok {
		return ""
	}
	return addrKey(call.Peer().Addr)
}

// addrKey is sourceAddr for a peer address, "host:port" or a bare host.
func addrKey(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if ip = ip.Unmap(); ip.Is6() {
		prefix, _ := ip.Prefix(64) // cannot fail for an IPv6 address
		return prefix.String()
	}
	return ip.String()
}
