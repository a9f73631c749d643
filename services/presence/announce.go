package presence

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/bus"
	busv1 "github.com/wagglechat/waggle/gen/go/waggle/bus/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// DefaultGrace is how long a user may be gone before subscribers hear they
// went offline. Mobile networks drop and restore connections within seconds;
// a reconnect inside the grace produces no offline/online pair.
const DefaultGrace = 5 * time.Second

// Publisher puts a payload on a bus channel.
type Publisher interface {
	Publish(ctx context.Context, channel string, payload []byte) error
}

// Announcer publishes presence changes for subscribers: online at once,
// offline only after the grace period and only if the user is still gone
// then. Give its Change method to RegistryConfig.OnChange.
type Announcer struct {
	grace   time.Duration
	reg     SessionReader
	publish Publisher
	rdb     *redis.Client
	prefix  string
	log     *slog.Logger

	mu      sync.Mutex
	pending map[string]*time.Timer // users whose offline is in its grace period
}

// NewAnnouncer returns an announcer; grace 0 means DefaultGrace. The
// registry is set with SetRegistry once built (the registry takes Change as
// its OnChange, so the two refer to each other).
func NewAnnouncer(grace time.Duration, publish Publisher, rdb *redis.Client, prefix string, log *slog.Logger) *Announcer {
	if grace == 0 {
		grace = DefaultGrace
	}
	return &Announcer{grace: grace, publish: publish, rdb: rdb, prefix: prefix, log: log, pending: map[string]*time.Timer{}}
}

// SetRegistry gives the announcer the registry it re-checks before
// announcing an offline.
func (a *Announcer) SetRegistry(r SessionReader) { a.reg = r }

// Change is the registry's OnChange callback.
func (a *Announcer) Change(userID string, online bool, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.pending[userID]; ok {
		t.Stop()
		delete(a.pending, userID)
		if online {
			return // back within the grace: subscribers never saw them leave
		}
	}
	if online {
		go a.announceOnline(userID)
		return
	}
	a.pending[userID] = time.AfterFunc(a.grace, func() {
		a.mu.Lock()
		delete(a.pending, userID)
		a.mu.Unlock()
		// Another presence process may have seen the user come back.
		if a.reg != nil {
			if states, err := a.reg.UserStates(context.Background(), []string{userID}, false); err == nil && len(states) == 1 && len(states[0].Sessions) > 0 {
				return
			}
		}
		a.announce(userID, &presencev1.UserPresence{UserId: userID, Status: presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE,
			LastSeenTime: timestamppb.New(at)})
	})
}

func (a *Announcer) announceOnline(userID string) {
	p := &presencev1.UserPresence{UserId: userID, Status: presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE}
	if a.reg != nil {
		if states, err := a.reg.UserStates(context.Background(), []string{userID}, false); err == nil && len(states) == 1 {
			p.DeviceCount = uint32(countDevices(states[0].Sessions))
		}
	}
	a.announce(userID, p)
}

func (a *Announcer) announce(userID string, p *presencev1.UserPresence) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.publishChange(ctx, userID, p); err != nil {
		a.log.Warn("presence: announce change", "user_id", userID, "status", p.GetStatus(), "err", err)
	}
}

func (a *Announcer) publishChange(ctx context.Context, userID string, p *presencev1.UserPresence) error {
	// Users this user blocked see no presence of theirs.
	hidden, err := a.rdb.SMembers(ctx, BlockedKey(a.prefix, userID)).Result()
	if err != nil {
		return fmt.Errorf("blocked users: %w", err)
	}
	payload, err := proto.Marshal(&busv1.PresenceChange{Presence: p, HiddenFromUserIds: hidden})
	if err != nil {
		return err
	}
	return a.publish.Publish(ctx, bus.PresenceChannel(userID), payload)
}

// BlockedKey is the Redis set of the users userID blocked, kept by the
// contact service next to the reverse set it keeps for visibility.
func BlockedKey(prefix, userID string) string { return prefix + "blocked:{" + userID + "}" }
