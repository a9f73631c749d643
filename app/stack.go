package app

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/wagglechat/waggle/blockmirror"
	"github.com/wagglechat/waggle/bus"
	"github.com/wagglechat/waggle/datadir"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/services/account"
	"github.com/wagglechat/waggle/services/chat"
	"github.com/wagglechat/waggle/services/contact"
	"github.com/wagglechat/waggle/services/presence"
	"github.com/wagglechat/waggle/sqlite"
)

// stack is the adapters one process runs on: the same services are built
// on either (see build).
type stack struct {
	// attrs describe the stack in the start-up log line.
	attrs []any
	bus   bus.Bus
	// resubscribed is where the edge hooks its repair of what a Redis
	// reconnect lost; nil when the bus never loses a message (in-process).
	resubscribed *atomic.Pointer[func(bus.Resubscribed)]
	blocks       blockMirror
	// blocksInMemory: the mirror starts empty and the chat role fills it
	// from the store before serving.
	blocksInMemory bool
	newRegistry    func(*slog.Logger, presence.RegistryConfig) *presence.Registry
	// The stores, set when this process runs the chat role.
	chat     chat.Store
	accounts account.Store
	contacts contact.Store
	// tokenSeed and internalSecret are the data directory's, for keys not
	// configured; nil and "" on Postgres and Redis.
	tokenSeed      []byte
	internalSecret string
	closers        []func()
}

// blockMirror is the copy of the block lists contacts write and presence
// reads.
type blockMirror interface {
	contact.BlockMirror
	presence.BlockLists
}

// close releases what the stack opened, in reverse order (the data
// directory's lock last).
func (s *stack) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// openStack opens cfg's stack; on an error nothing is left open.
func openStack(ctx context.Context, cfg Config, log *slog.Logger) (*stack, error) {
	s := &stack{}
	var err error
	if cfg.stack == StackEmbedded {
		err = s.openEmbedded(ctx, cfg, log)
	} else {
		err = s.openProduction(ctx, cfg, log)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// openEmbedded locks the data directory, opens (and migrates) the SQLite
// database in it, and starts the in-process bus.
func (s *stack) openEmbedded(ctx context.Context, cfg Config, log *slog.Logger) error {
	dir, err := datadir.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, func() { _ = dir.Close() })
	s.tokenSeed, s.internalSecret = dir.TokenSeed(), dir.InternalSecret()
	path := dir.Path()
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	s.attrs = []any{"stack", StackEmbedded.String(), "data_dir", path}

	db, err := sqlite.Open(ctx, dir.Path(), log)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, func() { _ = db.Close() })
	s.chat, s.accounts, s.contacts = sqlite.NewChatStore(db), sqlite.NewAccountStore(db), sqlite.NewContactStore(db)

	memBus := bus.NewMemory()
	s.bus = memBus
	s.closers = append(s.closers, func() { _ = memBus.Close() })
	s.blocks, s.blocksInMemory = blockmirror.NewMemory(), true
	s.newRegistry = presence.NewMemoryRegistry
	return nil
}

// openProduction connects to Postgres (for the chat role, migrating it
// unless told not to) and to Redis (every role: edges and chat for the
// bus, presence for sessions).
func (s *stack) openProduction(ctx context.Context, cfg Config, log *slog.Logger) error {
	s.attrs = []any{"stack", StackProduction.String()}
	if cfg.Roles.needsPostgres() {
		pg, err := openPostgres(ctx, cfg.PostgresURL)
		if err != nil {
			return err
		}
		s.closers = append(s.closers, pg.Close)
		if !cfg.SkipMigrate {
			if err := postgres.Migrate(ctx, pg, log); err != nil {
				return err
			}
		}
		s.chat, s.accounts, s.contacts = postgres.NewChatStore(pg), postgres.NewAccountStore(pg), postgres.NewContactStore(pg)
	}
	// The connection name shows up in Redis CLIENT LIST, so operators (and
	// the failure tests) can tell which node holds which connection.
	rdb, err := openRedis(ctx, cfg.RedisURL, "waggle-"+strings.ReplaceAll(cfg.Roles.String(), "+", "-")+"-"+cfg.EdgeID)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, func() { _ = rdb.Close() })

	// Pushes published while the bus was reconnecting are lost; the edge
	// (built later) repairs them.
	s.resubscribed = new(atomic.Pointer[func(bus.Resubscribed)])
	redisBus := bus.NewRedis(rdb, cfg.RedisPrefix, log, bus.RedisConfig{OnResubscribe: func(r bus.Resubscribed) {
		if f := s.resubscribed.Load(); f != nil {
			(*f)(r)
		}
	}})
	s.bus = redisBus
	s.closers = append(s.closers, func() { _ = redisBus.Close() })
	s.blocks = blockmirror.NewRedis(rdb, cfg.RedisPrefix)
	s.newRegistry = func(log *slog.Logger, rc presence.RegistryConfig) *presence.Registry {
		return presence.NewRedisRegistry(rdb, cfg.RedisPrefix, log, rc)
	}
	return nil
}
