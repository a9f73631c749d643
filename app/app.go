// Package app builds Waggle's object graph for the chosen roles and runs it:
// it opens the stack (Postgres and Redis as the roles need them, or the
// embedded SQLite store with the in-process bus and presence; see
// [Config.Stack]), applies migrations, mounts the services on one rpcserver
// and drains gracefully on stop.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/blockmirror"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/rpcserver"
	"github.com/wagglechat/waggle/services/contact"
)

// Run serves cfg.Roles until ctx is done, then drains and returns nil. It
// returns one error naming what failed if the process cannot start.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg, sec, err := cfg.resolve()
	if err != nil {
		return err
	}
	st, err := openStack(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.close()
	if sec.tokenSeed == nil {
		sec.tokenSeed = st.tokenSeed
	}
	if sec.internalSecret == "" {
		sec.internalSecret = st.internalSecret
	}
	signer, err := auth.NewSigner(sec.tokenSeed, 0)
	if err != nil {
		return err
	}
	policy := auth.DefaultPolicy()
	interceptor, err := auth.NewInterceptor(auth.InterceptorConfig{
		Verifier:       signer.Verifier(),
		InternalSecret: sec.internalSecret,
		Policy:         policy,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	srv, err := rpcserver.New(rpcserver.Config{
		Addr:            cfg.Addr,
		TLSCertFile:     cfg.TLSCertFile,
		TLSKeyFile:      cfg.TLSKeyFile,
		ReadMaxBytes:    cfg.MaxMessageBytes,
		Interceptors:    []connect.Interceptor{interceptor},
		DrainDelay:      cfg.DrainDelay,
		ShutdownTimeout: cfg.ShutdownTimeout,
		CORSOrigins:     cfg.CORSOrigins,
		Internal:        policy.InternalService,
	}, log)
	if err != nil {
		return err
	}

	d := deps{cfg: cfg, log: log, stack: st, signer: signer, internalSecret: sec.internalSecret}
	g, err := build(ctx, srv, d)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	for _, w := range sec.warnings {
		log.Warn(w)
	}
	attrs := append([]any{"roles", cfg.Roles.String()}, st.attrs...)
	log.Info("waggle started", append(attrs, "edge_id", cfg.EdgeID)...)
	if cfg.Ready != nil {
		cfg.Ready(srv.Addr())
	}
	workers, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	done := g.start(workers)
	err = srv.Serve(ctx)
	// Background work (fanout, edge loops) stops after the listener has
	// drained, so requests in flight can still deliver.
	stopWorkers()
	<-done
	return err
}

// Migrate applies the migrations to the database at cfg.PostgresURL.
func Migrate(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool, err := openPostgres(ctx, or(cfg.PostgresURL, DefaultPostgresURL))
	if err != nil {
		return err
	}
	defer pool.Close()
	return postgres.Migrate(ctx, pool, log)
}

// ResyncBlockers rebuilds Redis's copy of the block lists from Postgres;
// run it after Redis lost data (see contact.Service.ResyncBlockers).
func ResyncBlockers(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool, err := openPostgres(ctx, or(cfg.PostgresURL, DefaultPostgresURL))
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb, err := openRedis(ctx, or(cfg.RedisURL, DefaultRedisURL), "waggle-resync-blockers")
	if err != nil {
		return err
	}
	defer rdb.Close()
	mirror := blockmirror.NewRedis(rdb, or(cfg.RedisPrefix, DefaultRedisPrefix))
	return contact.New(postgres.NewContactStore(pool), mirror, nil, log).ResyncBlockers(ctx)
}

// deps is what services are built from.
type deps struct {
	cfg            Config // resolved: defaults applied
	log            *slog.Logger
	stack          *stack
	signer         *auth.Signer
	internalSecret string
}

func openPostgres(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := postgres.Open(ctx, url)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
		return nil, fmt.Errorf("%w (create the database first, e.g. with createdb)", err)
	}
	return pool, err
}

// openRedis connects and pings, so an unreachable Redis fails at start.
func openRedis(ctx context.Context, url, name string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: parse url: %w", err)
	}
	opt.ClientName = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return '_'
		}
		return r
	}, name)
	rdb := redis.NewClient(opt)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis: cannot reach %s: %w", opt.Addr, err)
	}
	return rdb, nil
}
