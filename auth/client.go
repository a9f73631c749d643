package auth

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
)

// InternalClientInterceptor returns a client interceptor that presents the
// internal credential on every outgoing call and names the user found in the
// call's context (FromContext), so a service sees the same Identity as if the
// app had called it directly. Edges use it on their service clients.
func InternalClientInterceptor(secret string) connect.Interceptor {
	return internalClient{secret: secret}
}

type internalClient struct {
	secret string
}

func (c internalClient) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			c.setHeaders(ctx, req.Header())
		}
		return next(ctx, req)
	}
}

func (c internalClient) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		// Headers go out with the first Send, so setting them here is in time.
		c.setHeaders(ctx, conn.RequestHeader())
		return conn
	}
}

func (c internalClient) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (c internalClient) setHeaders(ctx context.Context, h http.Header) {
	h.Set(HeaderInternalToken, c.secret)
	if id, ok := FromContext(ctx); ok {
		h.Set(HeaderUserID, id.UserID)
		h.Set(HeaderDeviceID, id.DeviceID)
		if id.SessionID != "" {
			h.Set(HeaderSessionID, id.SessionID)
		}
	}
}
