package contact

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	contactv1 "github.com/wagglechat/waggle/gen/go/waggle/contact/v1"
	"github.com/wagglechat/waggle/services/contact/block"
	"github.com/wagglechat/waggle/services/presence"
)

// Querier is what [IsBlockedBy] needs; *pgxpool.Pool and pgx.Tx satisfy it.
type Querier = block.Querier

// IsBlockedBy reports whether by has blocked user: then user may not start
// or send in a direct conversation with by. It is [block.IsBlockedBy];
// services/chat imports that package, since this one imports chat.
func IsBlockedBy(ctx context.Context, q Querier, user, by uuid.UUID) (bool, error) {
	return block.IsBlockedBy(ctx, q, user, by)
}

// BlockUser blocks user_id: they can no longer start or send in a direct
// conversation with the caller, and see the caller offline and never seen.
// They are not told. Blocking keeps them in the caller's contacts, so that
// unblocking restores the list as it was; remove the contact separately if
// wanted. Blocking a blocked user succeeds and changes nothing.
//
// If the block is saved but the presence mirror in Redis cannot be updated,
// the call fails with Unavailable; calling again completes it.
func (s *Service) BlockUser(ctx context.Context, req *contactv1.BlockUserRequest) (*contactv1.BlockUserResponse, error) {
	uid, other, err := s.change(ctx, "block user", req.GetUserId(), func(tx pgx.Tx, uid, other uuid.UUID) (bool, error) {
		tag, err := tx.Exec(ctx, `INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, uid, other)
		switch {
		case foreignKey(err, "blocks_blocked_fk"):
			return false, userNotFound(other)
		case err != nil:
			return false, fmt.Errorf("insert block: %w", err)
		}
		return tag.RowsAffected() > 0, nil
	})
	if err != nil {
		return nil, err
	}
	// Also when nothing changed: a retry completes a mirror write that failed.
	if err := s.mirror(ctx, uid, other); err != nil {
		s.log.ErrorContext(ctx, "contact: mirror block to redis", "blocker", uid, "blocked", other, "err", err)
		return nil, connect.NewError(connect.CodeUnavailable,
			errors.New("the user is blocked, but hiding your presence from them failed; call BlockUser again"))
	}
	return &contactv1.BlockUserResponse{}, nil
}

// UnblockUser lifts the caller's block of user_id. Unblocking a user who is
// not blocked succeeds and changes nothing; a user_id that names no user is
// NotFound. Like BlockUser, it fails with Unavailable if the presence
// mirror cannot be updated, and calling again completes it.
func (s *Service) UnblockUser(ctx context.Context, req *contactv1.UnblockUserRequest) (*contactv1.UnblockUserResponse, error) {
	uid, other, err := s.change(ctx, "unblock user", req.GetUserId(), func(tx pgx.Tx, uid, other uuid.UUID) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2`, uid, other)
		if err != nil {
			return false, fmt.Errorf("delete block: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return false, requireUser(ctx, tx, other)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.mirror(ctx, uid, other); err != nil {
		s.log.ErrorContext(ctx, "contact: mirror unblock to redis", "blocker", uid, "blocked", other, "err", err)
		return nil, connect.NewError(connect.CodeUnavailable,
			errors.New("the user is unblocked, but showing them your presence again failed; call UnblockUser again"))
	}
	return &contactv1.UnblockUserResponse{}, nil
}

// ListBlockedUsers pages through the users the caller blocked, in user id
// order (page_size default 100, at most 1000).
func (s *Service) ListBlockedUsers(ctx context.Context, req *contactv1.ListBlockedUsersRequest) (*contactv1.ListBlockedUsersResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeToken(blockedList, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT blocked_id, create_time FROM blocks
		WHERE blocker_id = $1 AND blocked_id > $2 ORDER BY blocked_id LIMIT $3`, uid, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list blocked users", err)
	}
	blocked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*contactv1.BlockedUser, error) {
		var user uuid.UUID
		var created time.Time
		if err := r.Scan(&user, &created); err != nil {
			return nil, err
		}
		return &contactv1.BlockedUser{UserId: user.String(), CreateTime: timestamppb.New(created)}, nil
	})
	if err != nil {
		return nil, s.internal(ctx, "list blocked users", err)
	}
	res := &contactv1.ListBlockedUsersResponse{BlockedUsers: blocked}
	if len(blocked) > size {
		res.BlockedUsers = blocked[:size]
		res.NextPageToken = encodeToken(blockedList, uuid.MustParse(blocked[size-1].GetUserId()))
	}
	return res, nil
}

// mirror makes blocker's membership of blocked's blockers set in Redis
// match Postgres. It runs after the change committed, under the blocker's
// lock: concurrent blocks and unblocks of one pair then write Redis in
// commit order, the last one reading the final state, so the mirror cannot
// be left showing an earlier state. It finishes even if the caller goes.
func (s *Service) mirror(ctx context.Context, blocker, blocked uuid.UUID) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), postCommitTimeout)
	defer cancel()
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		// Lock, then read in a second statement: in READ COMMITTED a
		// statement reads with the snapshot it started with, even after
		// waiting for a lock, so reading in the locking statement could
		// miss the change that held the lock.
		err := lockOwner(ctx, tx, blocker)
		if err != nil && !errors.Is(err, errNoAccount) { // gone: its blocks went with it
			return err
		}
		isBlocked, err := block.IsBlockedBy(ctx, tx, blocked, blocker)
		if err != nil {
			return err
		}
		// Both directions: presence reads who blocked a viewer (snapshots)
		// and whom a user blocked (live changes).
		blockers := presence.BlockersKey(s.prefix, blocked.String())
		blockedBy := presence.BlockedKey(s.prefix, blocker.String())
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			if isBlocked {
				p.SAdd(ctx, blockers, blocker.String())
				p.SAdd(ctx, blockedBy, blocked.String())
			} else {
				p.SRem(ctx, blockers, blocker.String())
				p.SRem(ctx, blockedBy, blocked.String())
			}
			return nil
		})
		return err
	})
}

// resyncBatch is how many blocks, or Redis set members, ResyncBlockers
// handles per step (one transaction and one Redis round trip).
const resyncBatch = 1000

// ResyncBlockers rebuilds the Redis mirror of the blocks table that the
// presence service reads, both ways (see [presence.BlockersKey] and
// [presence.BlockedKey]; `waggle resync-blockers` runs it): it adds every block,
// then removes every set member Postgres does not hold (a mirror write that
// failed, users deleted since, leftovers of another deployment).
//
// Nothing needs it at startup: the mirror is written on every block and
// unblock and lives as long as Redis keeps its data. Run it after Redis lost
// data (a restart without persistence, a failover to a replica that was
// behind, a flush); until then, blocked users may see their blockers'
// presence. Messaging is not affected: the chat service reads Postgres.
//
// It may run while the service is serving: each step holds the locks that
// BlockUser and UnblockUser hold while they write the mirror, so it never
// undoes a concurrent change. It takes one transaction per resyncBatch
// blocks and one SCAN over the blockers keys.
func (s *Service) ResyncBlockers(ctx context.Context) error {
	start := time.Now()
	added, err := s.resyncAdd(ctx)
	if err != nil {
		return fmt.Errorf("contact: resync blockers: %w", err)
	}
	keys, removed, err := s.resyncPrune(ctx)
	if err != nil {
		return fmt.Errorf("contact: resync blockers: %w", err)
	}
	s.log.InfoContext(ctx, "contact: resynced blockers in redis", "blocks", added, "keys", keys,
		"stale_removed", removed, "took", time.Since(start))
	return nil
}

type pair struct{ blocker, blocked uuid.UUID }

// resyncAdd adds every block to the mirror, in (blocker, blocked) order,
// and returns how many it found.
func (s *Service) resyncAdd(ctx context.Context) (int, error) {
	var after pair
	total := 0
	for {
		// Find the next batch without locks, then lock its blockers and read
		// their blocks in that range again, as they are now.
		rows, err := s.db.Query(ctx, `SELECT blocker_id, blocked_id FROM blocks
			WHERE (blocker_id, blocked_id) > ($1, $2) ORDER BY blocker_id, blocked_id LIMIT $3`,
			after.blocker, after.blocked, resyncBatch)
		if err != nil {
			return total, fmt.Errorf("read blocks: %w", err)
		}
		batch, err := pgx.CollectRows(rows, scanPair)
		if err != nil {
			return total, fmt.Errorf("read blocks: %w", err)
		}
		if len(batch) == 0 {
			return total, nil
		}
		last := batch[len(batch)-1]
		var blockers []uuid.UUID
		for _, p := range batch {
			if len(blockers) == 0 || blockers[len(blockers)-1] != p.blocker {
				blockers = append(blockers, p.blocker)
			}
		}
		err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			if err := lockOwners(ctx, tx, blockers); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT blocker_id, blocked_id FROM blocks
				WHERE blocker_id = ANY($1) AND (blocker_id, blocked_id) > ($2, $3) AND (blocker_id, blocked_id) <= ($4, $5)`,
				blockers, after.blocker, after.blocked, last.blocker, last.blocked)
			if err != nil {
				return fmt.Errorf("read blocks: %w", err)
			}
			current, err := pgx.CollectRows(rows, scanPair)
			if err != nil {
				return fmt.Errorf("read blocks: %w", err)
			}
			total += len(current)
			if len(current) == 0 {
				return nil
			}
			_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, b := range current {
					p.SAdd(ctx, presence.BlockersKey(s.prefix, b.blocked.String()), b.blocker.String())
					p.SAdd(ctx, presence.BlockedKey(s.prefix, b.blocker.String()), b.blocked.String())
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("redis sadd: %w", err)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		if len(batch) < resyncBatch {
			return total, nil
		}
		after = last
	}
}

func scanPair(r pgx.CollectableRow) (pair, error) {
	var p pair
	err := r.Scan(&p.blocker, &p.blocked)
	return p, err
}

// lockOwners takes the row locks of lockOwner for several users, in id
// order so that concurrent resyncs cannot deadlock. Users that are gone
// are skipped: they have no blocks left.
func lockOwners(ctx context.Context, tx pgx.Tx, ids []uuid.UUID) error {
	if _, err := tx.Exec(ctx, `SELECT FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, ids); err != nil {
		return fmt.Errorf("lock owners: %w", err)
	}
	return nil
}

// mirrorSet is one direction of the mirror: its key per user, and the block
// a member of that user's set stands for.
type mirrorSet struct {
	key  func(prefix, userID string) string
	pair func(keyUser, member uuid.UUID) pair
}

var mirrorSets = []mirrorSet{
	{presence.BlockersKey, func(blocked, blocker uuid.UUID) pair { return pair{blocker, blocked} }},
	{presence.BlockedKey, func(blocker, blocked uuid.UUID) pair { return pair{blocker, blocked} }},
}

// resyncPrune removes the mirror's members that Postgres does not hold, in
// both directions. It returns how many keys it saw and how many members it
// removed.
func (s *Service) resyncPrune(ctx context.Context) (keys, removed int, err error) {
	for _, set := range mirrorSets {
		keyPrefix := set.key(s.prefix, "")
		keyPrefix = keyPrefix[:len(keyPrefix)-1] // "<prefix>blockers:{"
		match := escapeGlob(keyPrefix) + "*}"
		var cursor uint64
		for {
			batch, next, err := s.rdb.Scan(ctx, cursor, match, resyncBatch).Result()
			if err != nil {
				return keys, removed, fmt.Errorf("redis scan: %w", err)
			}
			keys += len(batch)
			n, err := s.pruneKeys(ctx, set, keyPrefix, batch)
			removed += n
			if err != nil {
				return keys, removed, err
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return keys, removed, nil
}

// pruneKeys checks every member of the sets named by keys.
func (s *Service) pruneKeys(ctx context.Context, set mirrorSet, keyPrefix string, keys []string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(keys))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.SMembers(ctx, k)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("redis smembers: %w", err)
	}
	removed := 0
	var candidates []pair
	// Keys and members that are not user ids were not written by this
	// service, and no block can match them.
	var garbage []string
	for i, k := range keys {
		keyUser, err := uuid.Parse(strings.TrimSuffix(strings.TrimPrefix(k, keyPrefix), "}"))
		if err != nil {
			if err := s.rdb.Del(ctx, k).Err(); err != nil {
				return removed, fmt.Errorf("redis del: %w", err)
			}
			removed += len(cmds[i].Val())
			continue
		}
		garbage = garbage[:0]
		for _, m := range cmds[i].Val() {
			if member, err := uuid.Parse(m); err == nil {
				candidates = append(candidates, set.pair(keyUser, member))
			} else {
				garbage = append(garbage, m)
			}
		}
		if len(garbage) > 0 {
			if err := s.rdb.SRem(ctx, k, garbage).Err(); err != nil {
				return removed, fmt.Errorf("redis srem: %w", err)
			}
			removed += len(garbage)
		}
	}
	for len(candidates) > 0 {
		n := min(len(candidates), resyncBatch)
		r, err := s.pruneStale(ctx, candidates[:n])
		removed += r
		if err != nil {
			return removed, err
		}
		candidates = candidates[n:]
	}
	return removed, nil
}

// pruneStale removes those of pairs that are not blocks from the mirror.
func (s *Service) pruneStale(ctx context.Context, pairs []pair) (int, error) {
	stale, err := staleOf(ctx, s.db, pairs)
	if err != nil || len(stale) == 0 {
		return 0, err
	}
	// Check again under the blockers' locks, so that a block committed
	// since is not removed.
	var blockers []uuid.UUID
	for _, p := range stale {
		blockers = append(blockers, p.blocker)
	}
	removed := 0
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := lockOwners(ctx, tx, blockers); err != nil {
			return err
		}
		stale, err := staleOf(ctx, tx, stale)
		if err != nil || len(stale) == 0 {
			return err
		}
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, st := range stale {
				p.SRem(ctx, presence.BlockersKey(s.prefix, st.blocked.String()), st.blocker.String())
				p.SRem(ctx, presence.BlockedKey(s.prefix, st.blocker.String()), st.blocked.String())
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redis srem: %w", err)
		}
		removed = len(stale)
		return nil
	})
	return removed, err
}

// staleOf returns those of pairs that are not blocks.
func staleOf(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, pairs []pair) ([]pair, error) {
	blockers := make([]uuid.UUID, len(pairs))
	blocked := make([]uuid.UUID, len(pairs))
	for i, p := range pairs {
		blockers[i], blocked[i] = p.blocker, p.blocked
	}
	rows, err := q.Query(ctx, `SELECT p.b, p.x FROM unnest($1::uuid[], $2::uuid[]) AS p (b, x)
		WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = p.b AND blocked_id = p.x)`, blockers, blocked)
	if err != nil {
		return nil, fmt.Errorf("check blocks: %w", err)
	}
	stale, err := pgx.CollectRows(rows, scanPair)
	if err != nil {
		return nil, fmt.Errorf("check blocks: %w", err)
	}
	return stale, nil
}

// escapeGlob quotes the characters SCAN MATCH treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
