package blockmirror

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/services/contact"
)

// BlockersKey is the Redis set of the users who blocked userID:
//
//	<prefix>blockers:{<user_id>}  SET of blocker user ids
//
// The {user_id} hash tag keeps the key with the user's session keys in
// Redis Cluster.
func BlockersKey(prefix, userID string) string { return prefix + "blockers:{" + userID + "}" }

// BlockedKey is the Redis set of the users userID blocked, the reverse of
// BlockersKey:
//
//	<prefix>blocked:{<user_id>}  SET of blocked user ids
func BlockedKey(prefix, userID string) string { return prefix + "blocked:{" + userID + "}" }

// Redis is the mirror in Redis, at BlockersKey and BlockedKey under a
// prefix. Reading it needs Redis 6.2 or later (SMISMEMBER).
type Redis struct {
	client *redis.Client
	prefix string
}

// NewRedis returns the mirror under prefix in client.
func NewRedis(client *redis.Client, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

func (r *Redis) AddBlocks(ctx context.Context, blocks []contact.Block) error {
	if err := r.each(ctx, blocks, redis.Pipeliner.SAdd); err != nil {
		return fmt.Errorf("redis sadd: %w", err)
	}
	return nil
}

func (r *Redis) RemoveBlocks(ctx context.Context, blocks []contact.Block) error {
	if err := r.each(ctx, blocks, redis.Pipeliner.SRem); err != nil {
		return fmt.Errorf("redis srem: %w", err)
	}
	return nil
}

// each applies op (SADD or SREM) to both directions of every block, in one
// pipeline.
func (r *Redis) each(ctx context.Context, blocks []contact.Block, op func(redis.Pipeliner, context.Context, string, ...any) *redis.IntCmd) error {
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, b := range blocks {
			op(p, ctx, BlockersKey(r.prefix, b.Blocked.String()), b.Blocker.String())
			op(p, ctx, BlockedKey(r.prefix, b.Blocker.String()), b.Blocked.String())
		}
		return nil
	})
	return err
}

// direction is one of the two kinds of set: its key per user, and the
// block a member of a user's set stands for.
type direction struct {
	key   func(prefix, userID string) string
	block func(keyUser, member uuid.UUID) contact.Block
}

var directions = []direction{
	{BlockersKey, func(blocked, blocker uuid.UUID) contact.Block {
		return contact.Block{Blocker: blocker, Blocked: blocked}
	}},
	{BlockedKey, func(blocker, blocked uuid.UUID) contact.Block {
		return contact.Block{Blocker: blocker, Blocked: blocked}
	}},
}

// ScanBlocks SCANs both kinds of set, so a block comes once from each set
// that holds it. Keys and members that are not user ids stand for no block
// (no contact service wrote them): they are deleted as they are found.
func (r *Redis) ScanBlocks(ctx context.Context, fn func([]contact.Block) error) error {
	for _, dir := range directions {
		keyPrefix := dir.key(r.prefix, "")
		keyPrefix = keyPrefix[:len(keyPrefix)-1] // "<prefix>blockers:{"
		match := escapeGlob(keyPrefix) + "*}"
		var cursor uint64
		for {
			keys, next, err := r.client.Scan(ctx, cursor, match, scanPage).Result()
			if err != nil {
				return fmt.Errorf("redis scan: %w", err)
			}
			blocks, err := r.members(ctx, dir, keyPrefix, keys)
			if err != nil {
				return err
			}
			for len(blocks) > 0 {
				n := min(len(blocks), scanPage)
				if err := fn(blocks[:n]); err != nil {
					return err
				}
				blocks = blocks[n:]
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// members returns the blocks the sets named by keys stand for, deleting
// what is not a user id.
func (r *Redis) members(ctx context.Context, dir direction, keyPrefix string, keys []string) ([]contact.Block, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(keys))
	if _, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.SMembers(ctx, k)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("redis smembers: %w", err)
	}
	var blocks []contact.Block
	var garbage []string
	for i, k := range keys {
		keyUser, err := uuid.Parse(strings.TrimSuffix(strings.TrimPrefix(k, keyPrefix), "}"))
		if err != nil {
			if err := r.client.Del(ctx, k).Err(); err != nil {
				return nil, fmt.Errorf("redis del: %w", err)
			}
			continue
		}
		garbage = garbage[:0]
		for _, m := range cmds[i].Val() {
			if member, err := uuid.Parse(m); err == nil {
				blocks = append(blocks, dir.block(keyUser, member))
			} else {
				garbage = append(garbage, m)
			}
		}
		if len(garbage) > 0 {
			if err := r.client.SRem(ctx, k, garbage).Err(); err != nil {
				return nil, fmt.Errorf("redis srem: %w", err)
			}
		}
	}
	return blocks, nil
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

// BlockersAmong asks with one SMISMEMBER on the viewer's blockers set,
// however many users are asked.
func (r *Redis) BlockersAmong(ctx context.Context, viewer string, users []string) ([]bool, error) {
	if len(users) == 0 {
		return nil, nil
	}
	members := make([]any, len(users))
	for i, id := range users {
		members[i] = id
	}
	found, err := r.client.SMIsMember(ctx, BlockersKey(r.prefix, viewer), members...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis smismember: %w", err)
	}
	if len(found) != len(users) {
		return nil, fmt.Errorf("redis smismember: %d answers for %d users", len(found), len(users))
	}
	return found, nil
}

func (r *Redis) BlockedBy(ctx context.Context, user string) ([]string, error) {
	blocked, err := r.client.SMembers(ctx, BlockedKey(r.prefix, user)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis smembers: %w", err)
	}
	return blocked, nil
}
