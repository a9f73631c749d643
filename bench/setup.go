package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
)

// payloadType marks the bench's messages (a Custom content).
const payloadType = "waggle.bench"

// payloadHeader is the send time (Unix ns) and a tag: the sending
// session's index (load runs) or the message's index (fanout runs).
const payloadHeader = 12

func encodePayload(sent time.Time, tag int, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, uint64(sent.UnixNano()))
	binary.BigEndian.PutUint32(b[8:], uint32(tag))
	return b
}

func decodePayload(b []byte) (sentNanos int64, tag int, ok bool) {
	if len(b) < payloadHeader {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), int(binary.BigEndian.Uint32(b[8:])), true
}

// account is a registered bench user.
type account struct {
	id      string
	device  string
	token   string // access token
	refresh string
}

// h2cClient speaks HTTP/2 with prior knowledge to http:// URLs (and over
// TLS to https:// ones). Each one holds its own TCP connections.
func h2cClient() *http.Client {
	t := &http.Transport{}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true)
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}

// runID is a short random name for this run's usernames.
func runID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// forEach runs f for 0..n-1, at most parallel at once, and returns the
// first error (after which the remaining calls are skipped).
func forEach(ctx context.Context, n, parallel int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// register creates n users named <prefix>-<i>.
func register(ctx context.Context, api string, hc *http.Client, n, parallel int) ([]account, error) {
	accounts := accountv1connect.NewAccountServiceClient(hc, api)
	prefix := "bench-" + runID()
	out := make([]account, n)
	err := forEach(ctx, n, parallel, func(ctx context.Context, i int) error {
		res, err := accounts.Register(ctx, &accountv1.RegisterRequest{
			Username: fmt.Sprintf("%s-%d", prefix, i), Password: "waggle-bench-password", DeviceName: "waggle-bench"})
		if err != nil {
			return fmt.Errorf("register user %d: %w", i, err)
		}
		out[i] = account{id: res.GetUser().GetUserId(), device: res.GetDeviceId(), token: res.GetTokens().GetAccessToken(),
			refresh: res.GetTokens().GetRefreshToken()}
		return nil
	})
	return out, err
}

// bearer authorizes unary calls as one user.
func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// maxMembersPerCall is CreateGroupConversation's and AddMembers' limit.
const maxMembersPerCall = 1000

// createConversations creates each planned conversation as its first
// member and returns their ids.
func createConversations(ctx context.Context, api string, hc *http.Client, users []account, convs [][]int, shape Shape, parallel int) ([]string, error) {
	ids := make([]string, len(convs))
	err := forEach(ctx, len(convs), parallel, func(ctx context.Context, i int) error {
		members := convs[i]
		svc := chatv1connect.NewConversationServiceClient(hc, api, bearer(users[members[0]].token))
		others := make([]string, 0, len(members)-1)
		for _, u := range members[1:] {
			others = append(others, users[u].id)
		}
		if shape == ShapeDirect {
			res, err := svc.CreateDirectConversation(ctx, &chatv1.CreateDirectConversationRequest{PeerUserId: others[0]})
			if err != nil {
				return fmt.Errorf("create direct conversation %d: %w", i, err)
			}
			ids[i] = res.GetConversation().GetConversationId()
			return nil
		}
		first := others[:min(len(others), maxMembersPerCall)]
		res, err := svc.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{
			Title: fmt.Sprintf("bench %s %d", shape, i), MemberUserIds: first})
		if err != nil {
			return fmt.Errorf("create group %d: %w", i, err)
		}
		ids[i] = res.GetConversation().GetConversationId()
		if err := addMembers(ctx, svc, ids[i], others[len(first):]); err != nil {
			return fmt.Errorf("group %d: %w", i, err)
		}
		return nil
	})
	return ids, err
}

// addMembers adds users to a group, maxMembersPerCall at a time.
func addMembers(ctx context.Context, svc chatv1connect.ConversationServiceClient, conv string, users []string) error {
	for len(users) > 0 {
		batch := users[:min(len(users), maxMembersPerCall)]
		users = users[len(batch):]
		if _, err := svc.AddMembers(ctx, &chatv1.AddMembersRequest{ConversationId: conv, UserIds: batch}); err != nil {
			return fmt.Errorf("add members: %w", err)
		}
	}
	return nil
}

// errorCode names a failed send for the error table: its Connect code,
// or the context's when the send timed out locally.
func errorCode(err error) string {
	var ce *connect.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code().String()
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded (local)"
	case errors.Is(err, context.Canceled):
		return "canceled (local)"
	}
	return "unknown"
}
