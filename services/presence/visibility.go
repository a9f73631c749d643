package presence

import (
	"context"
	"fmt"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// BlockLists is the copy of the block lists that presence reads; the
// contact service keeps it (package blockmirror: Redis, or memory).
type BlockLists interface {
	// BlockersAmong reports, for each of users, whether it blocked viewer.
	BlockersAmong(ctx context.Context, viewer string, users []string) ([]bool, error)
	// BlockedBy returns the users that user blocked.
	BlockedBy(ctx context.Context, user string) ([]string, error)
}

// BlockVisibility hides from a viewer the presence of everyone who blocked
// the viewer, so a blocked user sees the blocker offline and never seen.
type BlockVisibility struct{ lists BlockLists }

var _ Visibility = (*BlockVisibility)(nil)

// NewBlockVisibility reads lists, the mirror the contact service writes.
func NewBlockVisibility(lists BlockLists) *BlockVisibility {
	return &BlockVisibility{lists: lists}
}

// Hidden returns those of userIDs who blocked viewerID, asked of the lists
// at once, however many users are asked.
func (v *BlockVisibility) Hidden(ctx context.Context, viewerID string, userIDs []string) (map[string]bool, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	found, err := v.lists.BlockersAmong(ctx, viewerID, userIDs)
	if err != nil {
		return nil, fmt.Errorf("presence: blockers of %s: %w", viewerID, err)
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
