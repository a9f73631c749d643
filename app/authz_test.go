package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/wagglechat/waggle/app"
	"github.com/wagglechat/waggle/auth"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/edge/v1/edgev1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
)

// mounted returns every method of every waggle service the server at addr
// answers health for, so a new RPC is covered without editing a test.
func mounted(t *testing.T, addr string) []protoreflect.MethodDescriptor {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	var methods []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			if !strings.HasPrefix(string(sd.FullName()), "waggle.") {
				continue
			}
			res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: string(sd.FullName())})
			if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				continue
			}
			for j := range sd.Methods().Len() {
				methods = append(methods, sd.Methods().Get(j))
			}
		}
		return true
	})
	return methods
}

// ids fill the request fields that name ids.
type ids struct{ user, device, conversation, message string }

// request builds md's input with every id field, at any depth of singular
// messages, set to the first user's.
func request(md protoreflect.MethodDescriptor, v ids) *dynamicpb.Message {
	m := dynamicpb.NewMessage(md.Input())
	fill(m, v)
	return m
}

func fill(m protoreflect.Message, v ids) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		name := string(f.Name())
		var id string
		switch {
		case strings.HasSuffix(name, "conversation_id") || strings.HasSuffix(name, "conversation_ids"):
			id = v.conversation
		case strings.HasSuffix(name, "message_id") || strings.HasSuffix(name, "message_ids"):
			id = v.message
		case strings.HasSuffix(name, "device_id") || strings.HasSuffix(name, "device_ids"):
			id = v.device
		case strings.HasSuffix(name, "user_id") || strings.HasSuffix(name, "user_ids"):
			id = v.user
		}
		switch {
		case id != "" && f.Kind() == protoreflect.StringKind && f.IsList():
			m.Mutable(f).List().Append(protoreflect.ValueOfString(id))
		case id != "" && f.Kind() == protoreflect.StringKind && f.Cardinality() != protoreflect.Repeated:
			m.Set(f, protoreflect.ValueOfString(id))
		case f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && f.ContainingOneof() == nil &&
			strings.HasPrefix(string(f.Message().FullName()), "waggle."):
			fill(m.Mutable(f).Message(), v)
		}
	}
}

// credential is what a matrix call presents.
type credential func(http.Header)

func bearer(token string) credential {
	return func(h http.Header) { h.Set("Authorization", "Bearer "+token) }
}

// call invokes md with req and returns the error and the encoded answer
// (the first message of a stream).
func call(t *testing.T, hc *http.Client, base string, md protoreflect.MethodDescriptor, req *dynamicpb.Message, cred credential) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	procedure := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	// Responses decode into Empty: what the server sent stays as unknown
	// fields, enough to tell whether it returned anything.
	client := connect.NewClient[dynamicpb.Message, emptypb.Empty](hc, base+procedure, connect.WithGRPC())
	switch {
	case md.IsStreamingClient():
		stream := client.CallBidiStream(ctx)
		cred(stream.RequestHeader())
		if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		res, err := stream.Receive()
		_ = stream.CloseRequest()
		_ = stream.CloseResponse()
		return res.ProtoReflect().GetUnknown(), err
	case md.IsStreamingServer():
		r := connect.NewRequest(req)
		cred(r.Header())
		stream, err := client.CallServerStream(ctx, r)
		if err != nil {
			return nil, err
		}
		defer stream.Close()
		if stream.Receive() {
			return stream.Msg().ProtoReflect().GetUnknown(), nil
		}
		return nil, stream.Err()
	default:
		r := connect.NewRequest(req)
		cred(r.Header())
		res, err := client.CallUnary(ctx, r)
		if err != nil {
			return nil, err
		}
		return res.Msg.ProtoReflect().GetUnknown(), nil
	}
}

// as calls procedure with a bearer token and typed messages.
func as[Req, Res any](t *testing.T, hc *http.Client, url, token string, req *Req) *Res {
	t.Helper()
	r := connect.NewRequest(req)
	bearer(token)(r.Header())
	res, err := connect.NewClient[Req, Res](hc, url).CallUnary(context.Background(), r)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return res.Msg
}

// TestAuthorizationMatrix calls every procedure the app mounts with each
// kind of wrong credential, naming the first user's ids, and checks the
// documented code and that nothing of hers leaks or changes, on both
// stacks.
func TestAuthorizationMatrix(t *testing.T) {
	stacks := []struct {
		name string
		cfg  func(t *testing.T) app.Config
	}{
		{"postgres+redis", func(t *testing.T) app.Config {
			_, prefix := redistest.New(t)
			return app.Config{PostgresURL: pgtest.NewURL(t), RedisURL: redistest.URL(), RedisPrefix: prefix}
		}},
		{"embedded", func(t *testing.T) app.Config { return app.Config{DataDir: t.TempDir()} }},
	}
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) { testAuthorizationMatrix(t, st.cfg(t)) })
	}
}

func testAuthorizationMatrix(t *testing.T, cfg app.Config) {
	cfg.Addr, cfg.TokenKey, cfg.InternalSecret = "127.0.0.1:0", testTokenKey, testSecret
	addr := start(t, cfg)
	base := "http://" + addr
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p}}

	register := func(name string) *accountv1.RegisterResponse {
		return as[accountv1.RegisterRequest, accountv1.RegisterResponse](t, hc, base+accountv1connect.AccountServiceRegisterProcedure, "",
			&accountv1.RegisterRequest{Username: name, Password: "password-" + name, DeviceName: "test"})
	}
	alice, bob := register("alice"), register("bob")
	aliceToken, bobToken := alice.GetTokens().GetAccessToken(), bob.GetTokens().GetAccessToken()
	group := as[chatv1.CreateGroupConversationRequest, chatv1.CreateGroupConversationResponse](t, hc, base+chatv1connect.ConversationServiceCreateGroupConversationProcedure, aliceToken,
		&chatv1.CreateGroupConversationRequest{Title: "alice only"}).GetConversation()
	sent := as[chatv1.SendMessageRequest, chatv1.SendMessageResponse](t, hc, base+chatv1connect.MessageServiceSendMessageProcedure, aliceToken,
		&chatv1.SendMessageRequest{ConversationId: group.GetConversationId(), ClientMsgId: "m1", Content: &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: "secret"}}}}).GetMessage()
	aliceIDs := ids{user: alice.GetUser().GetUserId(), device: alice.GetDeviceId(), conversation: group.GetConversationId(), message: sent.GetMessageId()}
	snapshot := func() []byte {
		conv := as[chatv1.GetConversationRequest, chatv1.GetConversationResponse](t, hc, base+chatv1connect.ConversationServiceGetConversationProcedure, aliceToken,
			&chatv1.GetConversationRequest{ConversationId: group.GetConversationId()})
		msgs := as[chatv1.ListMessagesRequest, chatv1.ListMessagesResponse](t, hc, base+chatv1connect.MessageServiceListMessagesProcedure, aliceToken,
			&chatv1.ListMessagesRequest{ConversationId: group.GetConversationId()})
		b1, _ := proto.MarshalOptions{Deterministic: true}.Marshal(conv)
		b2, _ := proto.MarshalOptions{Deterministic: true}.Marshal(msgs)
		return append(b1, b2...)
	}
	before := snapshot()

	// The documented exceptions (docs/protocol.md, "Authorization"); every
	// other procedure needs a user. Listed here, not read from
	// auth.DefaultPolicy, so a policy that loses an entry fails the test.
	public := []string{
		accountv1connect.AccountServiceRegisterProcedure,
		accountv1connect.AccountServiceLoginProcedure,
		accountv1connect.AccountServiceRefreshTokenProcedure,
	}
	selfAuthenticating := []string{edgev1connect.EdgeServiceConnectProcedure}
	internalServices := []string{presencev1connect.SessionRegistryServiceName, chatv1connect.DeliveryServiceName, chatv1connect.RelationServiceName}
	anyButAuth := func(code connect.Code) bool {
		return code != connect.CodeUnauthenticated && code != connect.CodePermissionDenied
	}
	is := func(want ...connect.Code) func(connect.Code) bool {
		return func(code connect.Code) bool { return slices.Contains(want, code) }
	}
	unauthenticated := is(connect.CodeUnauthenticated)
	// A stranger naming the first user's conversation or message learns
	// nothing: not_found (ids cannot be probed), permission_denied, or a
	// request refused as invalid before the lookup.
	stranger := is(connect.CodeNotFound, connect.CodePermissionDenied, connect.CodeInvalidArgument)
	var seen []string // procedures and services, so no exception goes untested
	for _, md := range mounted(t, addr) {
		procedure := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
		seen = append(seen, procedure, string(md.Parent().FullName()))
		req := request(md, aliceIDs)
		names := func(field protoreflect.Name) bool {
			f := md.Input().Fields().ByName(field)
			return f != nil && req.Has(f)
		}
		namesHers := names("conversation_id") || names("message_id")
		var outcome struct{ none, garbage, other, internal func(connect.Code) bool }
		switch {
		case slices.Contains(public, procedure):
			outcome.none, outcome.garbage, outcome.other, outcome.internal = anyButAuth, anyButAuth, anyButAuth, anyButAuth
		case slices.Contains(selfAuthenticating, procedure):
			// The credential is in the first frame, which here is no Hello.
			outcome.none, outcome.garbage, outcome.other, outcome.internal = unauthenticated, unauthenticated, unauthenticated, unauthenticated
		case slices.Contains(internalServices, string(md.Parent().FullName())):
			// An internal credential naming no one is the internal callers'
			// own use (checked by the e2e tests across processes).
			outcome.none, outcome.garbage, outcome.other = unauthenticated, unauthenticated, is(connect.CodePermissionDenied)
		default:
			outcome.none, outcome.garbage, outcome.internal = unauthenticated, unauthenticated, unauthenticated
			if namesHers {
				outcome.other = stranger
			}
		}
		t.Run(procedure, func(t *testing.T) {
			for _, c := range []struct {
				name string
				cred credential
				want func(connect.Code) bool
			}{
				{"no credential", func(http.Header) {}, outcome.none},
				{"garbage token", bearer("v1.garbage.garbage"), outcome.garbage},
				{"another user's token", bearer(bobToken), outcome.other},
				{"internal credential without identity", func(h http.Header) { h.Set(auth.HeaderInternalToken, testSecret) }, outcome.internal},
			} {
				res, err := call(t, hc, base, md, req, c.cred)
				if c.want != nil && !c.want(connect.CodeOf(err)) {
					t.Errorf("%s: %v", c.name, err)
				}
				for _, secret := range []string{aliceIDs.conversation, aliceIDs.message, "secret"} {
					if c.name != "internal credential without identity" && bytes.Contains(res, []byte(secret)) {
						t.Errorf("%s: the answer holds the first user's %q", c.name, secret)
					}
				}
			}
		})
	}
	for _, want := range slices.Concat(public, selfAuthenticating, internalServices) {
		if !slices.Contains(seen, want) {
			t.Errorf("%s is not mounted", want)
		}
	}
	if after := snapshot(); !bytes.Equal(before, after) {
		t.Error("alice's conversation or messages changed")
	}
}
