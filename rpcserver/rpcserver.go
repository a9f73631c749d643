// Package rpcserver serves Connect, gRPC and gRPC-Web on one listener:
// HTTP/1.1 and prior-knowledge HTTP/2 in cleartext, or HTTP/1.1 and HTTP/2
// over TLS. Every server also answers gRPC health checks and server
// reflection (v1 and v1alpha) for the services mounted on it, except those
// Config.Internal names.
package rpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/rs/cors"
)

// Defaults for the zero values of Config.
const (
	DefaultAddr                 = ":8080"
	DefaultReadMaxBytes         = 1 << 20
	DefaultMaxConcurrentStreams = 10000
	DefaultShutdownTimeout      = 15 * time.Second
)

// Messages smaller than this are sent uncompressed: gzip costs far more CPU
// than it saves on the small frames chat traffic is made of.
const compressMinBytes = 1024

// Config configures a Server. The zero value serves cleartext on :8080.
type Config struct {
	// Addr is the TCP address to listen on; ":0" picks a free port.
	// Default ":8080".
	Addr string
	// TLSCertFile and TLSKeyFile are PEM files. Set both to serve TLS
	// instead of cleartext; default: cleartext.
	TLSCertFile string
	TLSKeyFile  string
	// ReadMaxBytes is the largest message a handler accepts; larger ones
	// fail with ResourceExhausted. Default 1 MiB.
	ReadMaxBytes int
	// MaxConcurrentStreams is the limit of concurrent streams on one HTTP/2
	// connection. Default 10000: with net/http's 250, Go clients silently
	// open extra connections.
	MaxConcurrentStreams int
	// Interceptors run, in order, around every handler built with
	// HandlerOptions. Health and reflection stay outside them, so probes
	// and grpcurl need no credentials. Default none.
	Interceptors []connect.Interceptor
	// DrainDelay is how long Serve keeps accepting requests after reporting
	// NOT_SERVING, so load balancers stop sending new ones first. Default 0.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests and streams at
	// shutdown; connections still open then are closed. Default 15s.
	ShutdownTimeout time.Duration
	// CORSOrigins are the browser origins allowed to call (Connect and
	// gRPC-Web from a web page), such as "https://app.example.com", or "*".
	// Default none: browsers on other origins are refused.
	CORSOrigins []string
	// Internal reports the services only other Waggle nodes may call. They
	// are mounted and answer health checks, but reflection does not list
	// them, so apps and grpcurl are not shown what they cannot call.
	// Default none.
	Internal func(service string) bool
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.ReadMaxBytes == 0 {
		c.ReadMaxBytes = DefaultReadMaxBytes
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

// Server is one listener with its handlers. Mount services with Handle
// before calling Serve.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	http    *http.Server
	tls     bool
	health  *grpchealth.StaticChecker
	baseOpt []connect.HandlerOption

	mu       sync.Mutex
	services []string // fully-qualified names of the mounted services
	ln       net.Listener
}

// New builds a server. It loads the TLS key pair, if configured, so a bad
// file fails here rather than at the first handshake.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("rpcserver: TLS needs both a certificate and a key file")
	}
	if cfg.ReadMaxBytes < 0 || cfg.MaxConcurrentStreams < 0 {
		return nil, errors.New("rpcserver: ReadMaxBytes and MaxConcurrentStreams must not be negative")
	}
	s := &Server{
		cfg:    cfg,
		log:    log,
		mux:    http.NewServeMux(),
		health: grpchealth.NewStaticChecker(),
	}
	s.baseOpt = []connect.HandlerOption{
		connect.WithRecover(s.recoverPanic),
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithReadMaxBytes(cfg.ReadMaxBytes),
	}

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	s.http = &http.Server{
		Handler:   withCORS(s.mux, cfg.CORSOrigins),
		Protocols: &protocols,
		// No ReadTimeout or WriteTimeout: they would cut long-lived streams.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: cfg.MaxConcurrentStreams,
			// Ping connections that went quiet, so dead peers are noticed.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("rpcserver: load TLS key pair: %w", err)
		}
		s.tls = true
		protocols.SetHTTP2(true)
		s.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}

	// Reflection lists the mounted public services plus health and
	// reflection themselves, as grpc-go servers do, so grpcurl can describe
	// them all.
	reflector := grpcreflect.NewReflector(grpcreflect.NamerFunc(s.reflectedNames))
	s.mux.Handle(grpcreflect.NewHandlerV1(reflector, s.baseOpt...))
	s.mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, s.baseOpt...))
	s.mux.Handle(grpchealth.NewHandler(s.health, s.baseOpt...))
	return s, nil
}

// HandlerOptions returns the options every service handler must be built
// with: panic recovery, the compression threshold, the message size limit
// and the configured interceptors.
func (s *Server) HandlerOptions() []connect.HandlerOption {
	return slices.Concat(s.baseOpt, []connect.HandlerOption{connect.WithInterceptors(s.cfg.Interceptors...)})
}

// Handle mounts a service handler at path, as returned by a generated
// New...ServiceHandler, and lists the service in health and, unless
// Config.Internal names it, reflection. Call it before Serve.
func (s *Server) Handle(path string, h http.Handler) {
	s.mux.Handle(path, h)
	name := strings.Trim(path, "/")
	s.mu.Lock()
	s.services = append(s.services, name)
	s.mu.Unlock()
	s.health.SetStatus(name, grpchealth.StatusServing)
}

func (s *Server) reflectedNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, name := range s.services {
		if s.cfg.Internal == nil || !s.cfg.Internal(name) {
			names = append(names, name)
		}
	}
	return append(names,
		grpchealth.HealthV1ServiceName,
		grpcreflect.ReflectV1ServiceName,
		grpcreflect.ReflectV1AlphaServiceName,
	)
}

// SetServing sets what health checks report for the whole server ("") and
// every mounted service: SERVING or NOT_SERVING. Serve reports NOT_SERVING
// as soon as it starts draining.
func (s *Server) SetServing(serving bool) {
	status := grpchealth.StatusNotServing
	if serving {
		status = grpchealth.StatusServing
	}
	s.mu.Lock()
	names := append([]string{""}, s.services...)
	s.mu.Unlock()
	for _, name := range names {
		s.health.SetStatus(name, status)
	}
}

// OnShutdown registers f to run when shutdown begins, after the drain
// delay. Handlers of long-lived streams use it to end their streams, which
// shutdown otherwise waits for.
func (s *Server) OnShutdown(f func()) {
	s.http.RegisterOnShutdown(f)
}

// Listen binds the configured address. Serve calls it if needed; call it
// first to learn the address (for ":0") before serving.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("rpcserver: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves until ctx is done, then drains: health turns NOT_SERVING,
// new requests are still accepted for DrainDelay, then the listener closes
// and in-flight calls get up to ShutdownTimeout to finish.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.log.Info("listening", "addr", s.Addr().String(), "tls", s.tls)
	errc := make(chan error, 1)
	go func() {
		if s.tls {
			errc <- s.http.ServeTLS(s.ln, "", "")
		} else {
			errc <- s.http.Serve(s.ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("rpcserver: serve: %w", err)
	case <-ctx.Done():
	}

	s.SetServing(false)
	s.log.Info("draining", "delay", s.cfg.DrainDelay, "timeout", s.cfg.ShutdownTimeout)
	time.Sleep(s.cfg.DrainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		// Calls still running after the timeout are cut; the process is
		// stopping anyway, so this is worth a warning, not a failure.
		s.log.Warn("shutdown timed out; closing remaining connections", "err", err)
		_ = s.http.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("rpcserver: serve: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

func (s *Server) recoverPanic(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
	s.log.ErrorContext(ctx, "handler panic", "procedure", spec.Procedure, "panic", p, "stack", string(debug.Stack()))
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// withCORS answers browsers' preflight requests and adds the CORS headers
// Connect and gRPC-Web need, for the given origins.
func withCORS(h http.Handler, origins []string) http.Handler {
	if len(origins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: connectcors.ExposedHeaders(),
		MaxAge:         7200,
	}).Handler(h)
}
