package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/edge"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/contact/v1/contactv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
	"github.com/wagglechat/waggle/notify"
	"github.com/wagglechat/waggle/rpcserver"
	"github.com/wagglechat/waggle/services/account"
	"github.com/wagglechat/waggle/services/chat"
	"github.com/wagglechat/waggle/services/contact"
	"github.com/wagglechat/waggle/services/fanout"
	"github.com/wagglechat/waggle/services/presence"
)

// graph is the services of this process and their background work.
type graph struct {
	runners []func(context.Context)
}

// start runs the background work; the channel closes when all of it ended.
func (g *graph) start(ctx context.Context) <-chan struct{} {
	var wg sync.WaitGroup
	for _, run := range g.runners {
		wg.Go(func() { run(ctx) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// build creates the services of d.cfg.Roles and mounts them on srv. A role
// running in this process is called directly; one running elsewhere is
// reached over Connect at its configured URL, with the internal credential.
//
// The stack's in-memory block mirror is filled from the store here, before
// anything is served, so presence never shows a blocker to the blocked.
func build(ctx context.Context, srv *rpcserver.Server, d deps) (*graph, error) {
	g := &graph{}
	opts := srv.HandlerOptions()
	roles := d.cfg.Roles
	st := d.stack
	b := st.bus

	// The chat service, once built below, answers presence's relation
	// questions in this process.
	var chatRelations lateRelations

	// Presence: in this process, or a client of the presence role.
	var registry interface {
		fanout.SessionLocator
		edge.SessionRegistry
	}
	var presenceReader edge.PresenceReader
	// The blocks mirror contacts write and presence reads.
	blocks := st.blocks
	if roles.Has(RolePresence) {
		ann := presence.NewAnnouncer(d.cfg.PresenceGrace, b, blocks, d.log)
		reg := st.newRegistry(d.log, presence.RegistryConfig{OnChange: ann.Change})
		ann.SetRegistry(reg)
		g.runners = append(g.runners, func(ctx context.Context) { reg.RunSweeper(ctx, presenceSweepInterval) })
		// Presence is for contacts and conversation partners (asked of the
		// chat role) who have not blocked the viewer.
		var related presence.RelatedFilter = &chatRelations
		if !roles.Has(RoleChat) {
			hc, url := rpcClient(d.cfg.ChatURL)
			related = chatv1connect.NewRelationServiceClient(hc, url, connect.WithInterceptors(auth.InternalClientInterceptor(d.internalSecret)))
		}
		svc := presence.NewService(reg, d.log, presence.ServiceConfig{Visibility: presence.AllOf{
			presence.NewRelationVisibility(related),
			presence.NewBlockVisibility(blocks),
		}})
		srv.Handle(presencev1connect.NewSessionRegistryServiceHandler(reg, opts...))
		srv.Handle(presencev1connect.NewPresenceServiceHandler(svc, opts...))
		registry, presenceReader = reg, svc
	} else if roles.Has(RoleChat) || roles.Has(RoleEdge) {
		hc, url := rpcClient(d.cfg.PresenceURL)
		internal := connect.WithInterceptors(auth.InternalClientInterceptor(d.internalSecret))
		registry = presencev1connect.NewSessionRegistryServiceClient(hc, url, internal)
		presenceReader = presencev1connect.NewPresenceServiceClient(hc, url, internal)
	}

	var messages interface {
		edge.MessageService
		edge.DeliveryReporter
		edge.StreamReader
	}
	if roles.Has(RoleChat) {
		var push notify.Notifier
		if d.cfg.PushWebhookURL != "" {
			hook := notify.NewWebhook(notify.WebhookConfig{URL: d.cfg.PushWebhookURL, Secret: d.cfg.PushWebhookSecret}, d.log)
			g.runners = append(g.runners, hook.Run)
			push = hook
		}
		fan := fanout.New(fanout.Config{Push: push}, st.chat, registry, b, d.log)
		g.runners = append(g.runners, fan.Run)
		chatSvc := chat.New(chat.Config{SendRate: d.cfg.SendRate, SendBurst: d.cfg.SendBurst}, st.chat, fan, d.log)
		contacts := contact.New(st.contacts, blocks, fan, d.log)
		if st.blocksInMemory {
			if err := contacts.ResyncBlockers(ctx); err != nil {
				return nil, err
			}
		}
		srv.Handle(accountv1connect.NewAccountServiceHandler(account.New(st.accounts, d.signer, d.log, account.Options{
			Revoker:   fan,
			Passwords: auth.NewPasswords(auth.DefaultPasswordParams, d.cfg.PasswordHashes),
			Limits:    d.cfg.AccountLimits,
		}), opts...))
		srv.Handle(contactv1connect.NewContactServiceHandler(contacts, opts...))
		srv.Handle(chatv1connect.NewConversationServiceHandler(chatSvc, opts...))
		srv.Handle(chatv1connect.NewMessageServiceHandler(chatSvc, opts...))
		srv.Handle(chatv1connect.NewDeliveryServiceHandler(chatSvc, opts...))
		srv.Handle(chatv1connect.NewRelationServiceHandler(chatSvc, opts...))
		chatRelations.svc = chatSvc
		messages = chatSvc
	} else if roles.Has(RoleEdge) {
		hc, url := rpcClient(d.cfg.ChatURL)
		internal := connect.WithInterceptors(auth.InternalClientInterceptor(d.internalSecret))
		messages = struct {
			chatv1connect.MessageServiceClient
			chatv1connect.DeliveryServiceClient
		}{chatv1connect.NewMessageServiceClient(hc, url, internal), chatv1connect.NewDeliveryServiceClient(hc, url, internal)}
	}

	if roles.Has(RoleEdge) {
		e, err := edge.New(edge.Config{
			EdgeID: d.cfg.EdgeID, WriteInterval: d.cfg.EdgeWriteInterval, HelloTimeout: d.cfg.EdgeHelloTimeout,
			MaxPendingHellos: d.cfg.EdgeMaxPendingHellos, MaxPendingHellosPerConn: d.cfg.EdgeMaxPendingHellosPerConn,
		}, edge.Deps{
			Tokens:     d.signer.Verifier(),
			Messages:   messages,
			Deliveries: messages,
			Streams:    messages,
			Registry:   registry,
			Presence:   presenceReader,
			Bus:        b,
		}, d.log)
		if err != nil {
			return nil, err
		}
		srv.Handle(edge.NewHandler(e, opts...))
		if d.cfg.EdgeGRPCAddr != "" {
			lis, err := net.Listen("tcp", d.cfg.EdgeGRPCAddr)
			if err != nil {
				return nil, fmt.Errorf("edge grpc listener: %w", err)
			}
			gs := edge.NewGRPCServer(e)
			// Stopped with the other background work, once the main listener
			// has drained and the edge has sent its sessions a Goaway.
			g.runners = append(g.runners, func(ctx context.Context) {
				go func() { <-ctx.Done(); gs.Stop() }()
				if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
					d.log.Error("edge grpc listener stopped", "err", err)
				}
			})
			d.log.Info("edge grpc listener", "addr", lis.Addr().String())
		}
		if st.resubscribed != nil {
			resubscribed := e.Resubscribed
			st.resubscribed.Store(&resubscribed)
		}
		g.runners = append(g.runners, func(ctx context.Context) {
			if err := e.Run(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("edge stopped", "err", err)
			}
		})
		// Goaway to every session when the listener starts draining, so
		// clients move to another edge instead of waiting for a reset.
		srv.OnShutdown(func() {
			ctx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout)
			defer cancel()
			if err := e.Shutdown(ctx); err != nil {
				d.log.Warn("edge shutdown", "err", err)
			}
		})
	}
	return g, nil
}

// lateRelations forwards to the chat service built after presence in the
// same process.
type lateRelations struct{ svc *chat.Service }

func (l *lateRelations) FilterRelated(ctx context.Context, req *chatv1.FilterRelatedRequest) (*chatv1.FilterRelatedResponse, error) {
	return l.svc.FilterRelated(ctx, req)
}

// presenceSweepInterval is how often the presence role looks for users whose
// edge died, to announce them offline; a few seconds is well inside the
// session TTL.
const presenceSweepInterval = 5 * time.Second

// rpcClient returns an HTTP client for a Connect URL: HTTP/2 with prior
// knowledge for http:// (so streams and many calls share a connection), and
// ordinary TLS for https://.
func rpcClient(url string) (*http.Client, string) {
	url = strings.TrimSuffix(url, "/")
	if strings.HasPrefix(url, "https://") {
		return &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}}, url
	}
	t := &http.Transport{
		DialContext:     (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		IdleConnTimeout: 90 * time.Second,
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}, url
}
