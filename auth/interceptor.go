package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// Headers of the internal credential, presented by edges and services
// calling other services on a user's behalf.
const (
	HeaderInternalToken = "Waggle-Internal-Token"
	HeaderUserID        = "Waggle-User-Id"
	HeaderDeviceID      = "Waggle-Device-Id"
	// HeaderSessionID names the edge session a command came from (optional).
	HeaderSessionID = "Waggle-Session-Id"
)

var (
	errMissingCredentials = errors.New("missing credentials")
	errBadAuthorization   = errors.New(`authorization header must be "Bearer <access token>"`)
	errBadInternal        = errors.New("invalid internal credential")
	errInternalNoUser     = errors.New("internal call must name the user in " + HeaderUserID + " and " + HeaderDeviceID)
	errInternalOnly       = errors.New("procedure is internal-only")
)

// InterceptorConfig configures NewInterceptor.
type InterceptorConfig struct {
	Verifier *Verifier
	// InternalSecret is the shared internal credential. Empty refuses every
	// internal call, for nodes that only serve apps.
	InternalSecret string
	Policy         Policy
	// Logger receives rejected internal credentials, which point at a
	// misconfigured or hostile peer. Nil discards.
	Logger *slog.Logger
}

// Interceptor is the server-side connect.Interceptor that authenticates every
// call according to a Policy and puts the caller's Identity in the context.
type Interceptor struct {
	verifier *Verifier
	// secretSum is compared instead of the secret so the comparison takes the
	// same time whatever the length of the presented token.
	secretSum [sha256.Size]byte
	hasSecret bool
	policy    Policy
	log       *slog.Logger
}

var _ connect.Interceptor = (*Interceptor)(nil)

// NewInterceptor returns the server interceptor.
func NewInterceptor(cfg InterceptorConfig) (*Interceptor, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("auth: interceptor needs a verifier")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Interceptor{
		verifier:  cfg.Verifier,
		secretSum: sha256.Sum256([]byte(cfg.InternalSecret)),
		hasSecret: cfg.InternalSecret != "",
		policy:    cfg.Policy,
		log:       log,
	}, nil
}

// WrapUnary authenticates unary calls.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := i.authenticate(ctx, req.Spec().Procedure, req.Header(), req.Peer())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingHandler authenticates streaming calls on their headers.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader(), conn.Peer())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// WrapStreamingClient leaves outgoing streams alone: this is a server
// interceptor.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *Interceptor) authenticate(ctx context.Context, procedure string, h http.Header, peer connect.Peer) (context.Context, error) {
	need := i.policy.access(procedure)
	if need == accessPublic || need == accessSelf {
		return ctx, nil
	}
	// A presented internal token is decided on its own: an invalid one never
	// falls back to the bearer token.
	if token := h.Get(HeaderInternalToken); token != "" {
		return i.internal(ctx, procedure, token, h, need, peer)
	}
	id, err := i.bearer(h)
	if err != nil {
		return nil, err
	}
	if need == accessInternal {
		return nil, connect.NewError(connect.CodePermissionDenied, errInternalOnly)
	}
	return WithIdentity(ctx, id), nil
}

func (i *Interceptor) bearer(h http.Header) (Identity, error) {
	authz := h.Get("Authorization")
	if authz == "" {
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, errMissingCredentials)
	}
	scheme, token, _ := strings.Cut(authz, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, errBadAuthorization)
	}
	id, err := i.verifier.Verify(token)
	switch {
	case errors.Is(err, ErrTokenExpired):
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, ErrTokenExpired)
	case err != nil:
		// The detail (bad signature, unknown key) helps attackers more than
		// apps, so the client sees only the sentinel.
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, ErrInvalidToken)
	}
	return id, nil
}

func (i *Interceptor) internal(ctx context.Context, procedure, token string, h http.Header, need access, peer connect.Peer) (context.Context, error) {
	sum := sha256.Sum256([]byte(token))
	if !i.hasSecret || subtle.ConstantTimeCompare(sum[:], i.secretSum[:]) != 1 {
		i.log.WarnContext(ctx, "rejected internal credential", "procedure", procedure, "peer", peer.Addr)
		return nil, connect.NewError(connect.CodeUnauthenticated, errBadInternal)
	}
	ctx = WithInternal(ctx)
	id := Identity{UserID: h.Get(HeaderUserID), DeviceID: h.Get(HeaderDeviceID), SessionID: h.Get(HeaderSessionID)}
	switch {
	case id.UserID != "" && id.DeviceID != "":
		return WithIdentity(ctx, id), nil
	case need == accessInternal && id.UserID == "" && id.DeviceID == "":
		// An edge acting for itself, such as registering its sessions.
		return ctx, nil
	default:
		return nil, connect.NewError(connect.CodeUnauthenticated, errInternalNoUser)
	}
}
