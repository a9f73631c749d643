package account

import (
	"context"
	"net"
	"net/netip"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/errcode"
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

// limit takes a token of key's bucket in l (nil: no limit). A refusal says
// when the bucket has a token again (errcode.RetryLater).
func limit(l *ratelimit.Limiter, key, what string) error {
	if l == nil {
		return nil
	}
	ok, after := l.Take(key)
	if ok {
		return nil
	}
	return errcode.RetryLater("too many "+what, after)
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
