package presence

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
)

// BlockersKey is the Redis set of the users who blocked userID:
//
//	<prefix>blockers:{<user_id>}  SET of blocker user ids
//
// The contact service owns it: it mirrors its blocks table there after each
// committed block or unblock (and rebuilds it with ResyncBlockers after a
// Redis data loss). The {user_id} hash tag keeps the key with the user's
// session keys in Redis Cluster.
func BlockersKey(prefix, userID string) string { return prefix + "blockers:{" + userID + "}" }

// BlockVisibility hides from a viewer the presence of everyone who blocked
// the viewer, so a blocked user sees the blocker offline and never seen.
// It reads the sets at [BlockersKey] and needs Redis 6.2 or later.
type BlockVisibility struct {
	client *redis.Client
	prefix string
}

var _ Visibility = (*BlockVisibility)(nil)

// NewBlockVisibility reads the blockers sets under prefix in client, the
// same prefix the contact service writes them under.
func NewBlockVisibility(client *redis.Client, prefix string) *BlockVisibility {
	return &BlockVisibility{client: client, prefix: prefix}
}

// Hidden returns those of userIDs who blocked viewerID, with one
// SMISMEMBER on the viewer's blockers set, however many users are asked.
func (v *BlockVisibility) Hidden(ctx context.Context, viewerID string, userIDs []string) (map[string]bool, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	members := make([]any, len(userIDs))
	for i, id := range userIDs {
		members[i] = id
	}
	found, err := v.client.SMIsMember(ctx, BlockersKey(v.prefix, viewerID), members...).Result()
	if err != nil {
		if code := storeCode(err); code == connect.CodeCanceled || code == connect.CodeDeadlineExceeded {
			return nil, connect.NewError(code, fmt.Errorf("presence: blockers of %s: %w", viewerID, err))
		}
		// PresenceService logs it and answers Unavailable.
		return nil, fmt.Errorf("presence: blockers of %s: %w", viewerID, err)
	}
	if len(found) != len(userIDs) {
		return nil, fmt.Errorf("presence: blockers of %s: %d answers for %d users", viewerID, len(found), len(userIDs))
	}
	var hidden map[string]bool
	for i, isBlocker := range found {
		if isBlocker {
			if hidden == nil {
				hidden = make(map[string]bool)
			}
			hidden[userIDs[i]] = true
		}
	}
	return hidden, nil
}
