// Package chat is the chat service: conversations, members, messages, their
// gap-free event sequences, sync and history. It is stateless over a Store
// (store.go; the adapters are packages postgres and sqlite); after each commit it hands
// the new event to its Notifier, in its own terms. The real one is package
// fanout, which publishes it on the bus topics that edges holding its
// members subscribe to; this package knows neither the bus nor the edges'
// protocol.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/errcode"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	"github.com/wagglechat/waggle/ratelimit"
)

// Config tunes the chat service. Zero values take the defaults noted.
type Config struct {
	// MaxContentBytes caps a message's encoded content. Default 16 KiB.
	MaxContentBytes int
	// MaxTextChars caps a text body in characters. Default 4096.
	MaxTextChars int
	// MaxGroupMembers caps a group's size. Default 10,000.
	MaxGroupMembers int
	// RecallWindow is how long a sender may recall a message. Default 24 h.
	RecallWindow time.Duration
	// ReceiptPushLimit is the largest conversation whose members are pushed
	// each other's read markers; in larger groups a marker would be pushed
	// to every member on every read, so receipts are pulled there
	// (ListReadReceipts). Default 50.
	ReceiptPushLimit int
	// TypingLimit is the largest conversation typing indicators are pushed
	// in. Default 500.
	TypingLimit int
	// TypingInterval is the least time between two "typing" signals of one
	// user in one conversation; more are refused with resource_exhausted.
	// Default 2 s.
	TypingInterval time.Duration
	// SendRate and SendBurst limit each user's messages (per chat
	// process); more are refused with resource_exhausted. Defaults 20 a
	// second, bursts of 100.
	SendRate  float64
	SendBurst int
}

func (c Config) withDefaults() Config {
	if c.MaxContentBytes == 0 {
		c.MaxContentBytes = 16 << 10
	}
	if c.MaxTextChars == 0 {
		c.MaxTextChars = 4096
	}
	if c.MaxGroupMembers == 0 {
		c.MaxGroupMembers = 10_000
	}
	if c.RecallWindow == 0 {
		c.RecallWindow = 24 * time.Hour
	}
	if c.ReceiptPushLimit == 0 {
		c.ReceiptPushLimit = 50
	}
	if c.TypingLimit == 0 {
		c.TypingLimit = 500
	}
	if c.TypingInterval == 0 {
		c.TypingInterval = 2 * time.Second
	}
	if c.SendRate == 0 {
		c.SendRate = 20
	}
	if c.SendBurst == 0 {
		c.SendBurst = 100
	}
	return c
}

// Notifier delivers what the service commits, and what it signals without
// storing, to live sessions. It is told in the service's terms; the real
// one, package fanout, turns them into the edges' pushes. The calls for
// committed events return once the event is on its way to the edges.
type Notifier interface {
	// Notify delivers a committed conversation event to its members.
	Notify(ctx context.Context, ev Committed)
	// NotifyUser delivers a committed user event to the user's devices.
	NotifyUser(ctx context.Context, user string, ev *chatv1.UserEvent, senderSession string)
	// NotifyEphemeral delivers a signal that is not stored to the sessions
	// its kind names. It does not wait: a session that misses one is not
	// repaired.
	NotifyEphemeral(ctx context.Context, e Ephemeral)
}

// Ephemeral is a signal the service does not store: Typing,
// ReadMarkerMoved or UnreadChanged.
type Ephemeral interface{ ephemeral() }

// Typing says User started (Typing true) or stopped typing in
// Conversation. It is for the conversation's other members.
type Typing struct {
	Conversation, User string
	Typing             bool
}

// ReadMarkerMoved says a member read a conversation further (the marker
// names both). It is for the conversation's other members.
type ReadMarkerMoved struct{ Marker *chatv1.ReadMarker }

// UnreadChanged says User's unread count in Conversation is now Unread,
// and their badge Badge. It is for the user's sessions but SenderSession,
// whose call's answer carries both.
type UnreadChanged struct {
	User, Conversation string
	Unread, Badge      uint64
	SenderSession      string
}

func (Typing) ephemeral()          {}
func (ReadMarkerMoved) ephemeral() {}
func (UnreadChanged) ephemeral()   {}

// Service implements ConversationService, MessageService and
// DeliveryService.
type Service struct {
	cfg    Config
	store  Store
	notify Notifier
	log    *slog.Logger
	now    func() time.Time
	typing *ratelimit.Limiter // per user and conversation
	sends  *ratelimit.Limiter // per user
	sendQ  sendQueues
}

// New returns a chat service on store. notify may be nil (nothing is
// pushed; clients still get everything through sync).
func New(cfg Config, store Store, notify Notifier, log *slog.Logger) *Service {
	if notify == nil {
		notify = discard{}
	}
	cfg = cfg.withDefaults()
	return &Service{cfg: cfg, store: store, notify: notify, log: log, now: time.Now,
		typing: ratelimit.New(1/cfg.TypingInterval.Seconds(), 1),
		sends:  ratelimit.New(cfg.SendRate, cfg.SendBurst),
		sendQ:  sendQueues{byConv: map[uuid.UUID][]*sendReq{}}}
}

type discard struct{}

func (discard) Notify(context.Context, Committed)                             {}
func (discard) NotifyUser(context.Context, string, *chatv1.UserEvent, string) {}
func (discard) NotifyEphemeral(context.Context, Ephemeral)                    {}

// caller returns the authenticated identity; the interceptor guarantees one
// on every non-public procedure, so its absence is a wiring bug.
var (
	_ chatv1connect.ConversationServiceHandler = (*Service)(nil)
	_ chatv1connect.MessageServiceHandler      = (*Service)(nil)
	_ chatv1connect.DeliveryServiceHandler     = (*Service)(nil)
	_ chatv1connect.RelationServiceHandler     = (*Service)(nil)
)

// parseID parses a UUID from a request field, naming the field on error.
func parseID(field, s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, invalid("%s is required", field)
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, invalid("%s %q is not a valid id", field, s)
	}
	return id, nil
}

// seqArg checks a seq from a request: seqs are stored as bigint, so one
// above 2^63-1 would wrap to a negative position instead of being refused.
func seqArg(field string, seq uint64) (int64, error) {
	if seq > math.MaxInt64 {
		return 0, invalid("%s %d is out of range (at most %d)", field, seq, int64(math.MaxInt64))
	}
	return int64(seq), nil
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// errNoConversation is returned for conversations the caller cannot see,
// whether or not they exist, so ids cannot be probed.
var errNoConversation = connect.NewError(connect.CodeNotFound, errors.New("conversation not found"))

// internal gives err its public code, once, where it leaves the service:
// the store's sentinels that no call site gave a more precise answer mean
// the caller may not see the conversation or write to it; anything else
// gets its code from errcode, hiding its details.
func (s *Service) internal(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, ErrBlocked):
		return errBlocked
	case errors.Is(err, ErrNotFound):
		return errNoConversation
	case errors.Is(err, ErrBadCursor):
		return invalid("malformed sync cursor")
	}
	return errcode.Public(ctx, s.log, op, err)
}

// notFound turns the store's ErrNotFound into NotFound naming what.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, ErrNotFound) {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf(format, args...))
	}
	return err
}

func sessionID(ctx context.Context) string {
	id, _ := auth.FromContext(ctx)
	return id.SessionID
}
