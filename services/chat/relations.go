package chat

import (
	"context"

	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// FilterRelated tells the presence service whose presence a viewer may see:
// itself, its contacts and its conversation partners. Internal only.
func (s *Service) FilterRelated(ctx context.Context, req *chatv1.FilterRelatedRequest) (*chatv1.FilterRelatedResponse, error) {
	viewer, err := parseID("viewer_user_id", req.GetViewerUserId())
	if err != nil {
		return nil, err
	}
	if n := len(req.GetUserIds()); n > 1000 {
		return nil, invalid("at most 1000 user_ids, got %d", n)
	}
	ids := make([]uuid.UUID, 0, len(req.GetUserIds()))
	for _, raw := range req.GetUserIds() {
		// Ids that are not users are simply not related.
		if id, err := uuid.Parse(raw); err == nil {
			ids = append(ids, id)
		}
	}
	related, err := s.store.Related(ctx, viewer, ids)
	if err != nil {
		return nil, s.internal(ctx, "filter related", err)
	}
	return &chatv1.FilterRelatedResponse{RelatedUserIds: related}, nil
}
