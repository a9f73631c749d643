package edge

import (
	"context"
	"errors"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/bus"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// The edge's dependencies are declared here, where they are used, and kept
// to the methods the edge calls. The service methods have the signatures of
// the handlers generated with the connect "simple" option, so both the
// in-process handler and a generated Connect client satisfy them.

// TokenVerifier checks an access token locally and says whose it is.
type TokenVerifier interface {
	Verify(token string) (auth.Identity, error)
}

// MessageService is the part of the chat service's MessageService that
// session commands are forwarded to. Calls carry the session's identity,
// session id included (auth.FromContext), and are marked internal
// (auth.IsInternal).
type MessageService interface {
	SendMessage(context.Context, *chatv1.SendMessageRequest) (*chatv1.SendMessageResponse, error)
	Sync(context.Context, *chatv1.SyncRequest) (*chatv1.SyncResponse, error)
	MarkRead(context.Context, *chatv1.MarkReadRequest) (*chatv1.MarkReadResponse, error)
	SendTyping(context.Context, *chatv1.SendTypingRequest) (*chatv1.SendTypingResponse, error)
	AddReaction(context.Context, *chatv1.AddReactionRequest) (*chatv1.AddReactionResponse, error)
	RemoveReaction(context.Context, *chatv1.RemoveReactionRequest) (*chatv1.RemoveReactionResponse, error)
	EditMessage(context.Context, *chatv1.EditMessageRequest) (*chatv1.EditMessageResponse, error)
	DeleteMessagesForMe(context.Context, *chatv1.DeleteMessagesForMeRequest) (*chatv1.DeleteMessagesForMeResponse, error)
	RecallMessage(context.Context, *chatv1.RecallMessageRequest) (*chatv1.RecallMessageResponse, error)
}

// DeliveryReporter receives the events sessions acknowledged.
type DeliveryReporter interface {
	ReportDeliveries(context.Context, *chatv1.ReportDeliveriesRequest) (*chatv1.ReportDeliveriesResponse, error)
}

// SessionRegistry is where the edge records its live sessions, so services
// can find which edge holds a user.
type SessionRegistry interface {
	RegisterSessions(context.Context, *presencev1.RegisterSessionsRequest) (*presencev1.RegisterSessionsResponse, error)
	RenewSessions(context.Context, *presencev1.RenewSessionsRequest) (*presencev1.RenewSessionsResponse, error)
	UnregisterSessions(context.Context, *presencev1.UnregisterSessionsRequest) (*presencev1.UnregisterSessionsResponse, error)
}

// PresenceReader answers presence subscriptions with a snapshot.
type PresenceReader interface {
	GetPresence(context.Context, *presencev1.GetPresenceRequest) (*presencev1.GetPresenceResponse, error)
}

// StreamReader is the part of the chat service's DeliveryService that
// routes and repairs the edge's bus topics: which groups its users are in,
// and the events a subscription missed.
type StreamReader interface {
	ListRoutes(context.Context, *chatv1.ListRoutesRequest) (*chatv1.ListRoutesResponse, error)
	ReadEvents(context.Context, *chatv1.ReadEventsRequest) (*chatv1.ReadEventsResponse, error)
	ListDirectChanges(context.Context, *chatv1.ListDirectChangesRequest) (*chatv1.ListDirectChangesResponse, error)
}

// Bus is the subscribing side of the bus (bus.Subscriber). Handlers must
// not block; the edge only decodes, orders and enqueues in them.
type Bus interface {
	Subscribe(ctx context.Context, handle bus.Handler, channels ...string) ([]bus.Subscription, error)
}

// Deps are the services an Edge talks to. All are required.
type Deps struct {
	Tokens     TokenVerifier
	Messages   MessageService
	Deliveries DeliveryReporter
	Streams    StreamReader
	Registry   SessionRegistry
	Presence   PresenceReader
	Bus        Bus
}

func (d Deps) validate() error {
	var errs []error
	for _, dep := range []struct {
		name string
		set  bool
	}{
		{"Tokens", d.Tokens != nil},
		{"Messages", d.Messages != nil},
		{"Deliveries", d.Deliveries != nil},
		{"Streams", d.Streams != nil},
		{"Registry", d.Registry != nil},
		{"Presence", d.Presence != nil},
		{"Bus", d.Bus != nil},
	} {
		if !dep.set {
			errs = append(errs, errors.New("edge: Deps."+dep.name+" is nil"))
		}
	}
	return errors.Join(errs...)
}
