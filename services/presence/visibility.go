package presence

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
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

// RelatedFilter returns those of userIDs whose presence viewerID may see
// (the chat service's RelationService: itself, contacts and conversation
// partners).
type RelatedFilter interface {
	FilterRelated(context.Context, *chatv1.FilterRelatedRequest) (*chatv1.FilterRelatedResponse, error)
}

// RelationVisibility shows a viewer the presence of its contacts and
// conversation partners only, as the brief has it.
type RelationVisibility struct{ related RelatedFilter }

// NewRelationVisibility asks related, in process or over RPC.
func NewRelationVisibility(related RelatedFilter) *RelationVisibility {
	return &RelationVisibility{related: related}
}

// Hidden returns those of userIDs that are not related to viewerID.
func (v *RelationVisibility) Hidden(ctx context.Context, viewerID string, userIDs []string) (map[string]bool, error) {
	res, err := v.related.FilterRelated(auth.WithInternal(ctx), &chatv1.FilterRelatedRequest{ViewerUserId: viewerID, UserIds: userIDs})
	if err != nil {
		return nil, fmt.Errorf("presence: relations of %s: %w", viewerID, err)
	}
	related := make(map[string]bool, len(res.GetRelatedUserIds()))
	for _, id := range res.GetRelatedUserIds() {
		related[id] = true
	}
	hidden := map[string]bool{}
	for _, id := range userIDs {
		if !related[id] {
			hidden[id] = true
		}
	}
	return hidden, nil
}

// AllOf hides what any of vs hides.
type AllOf []Visibility

// Hidden merges the hidden sets of every Visibility.
func (all AllOf) Hidden(ctx context.Context, viewerID string, userIDs []string) (map[string]bool, error) {
	hidden := map[string]bool{}
	for _, v := range all {
		h, err := v.Hidden(ctx, viewerID, userIDs)
		if err != nil {
			return nil, err
		}
		for id := range h {
			hidden[id] = true
		}
	}
	return hidden, nil
}
