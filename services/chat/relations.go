package chat

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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
	rows, err := s.db.Query(ctx, `SELECT u::text FROM unnest($2::uuid[]) AS u WHERE u = $1
		OR EXISTS (SELECT 1 FROM contacts WHERE owner_id = $1 AND user_id = u)
		OR EXISTS (SELECT 1 FROM members a JOIN members b ON b.conversation_id = a.conversation_id
			WHERE a.user_id = $1 AND a.left_seq IS NULL AND b.user_id = u AND b.left_seq IS NULL)`, viewer, ids)
	if err != nil {
		return nil, s.internal(ctx, "filter related", err)
	}
	related, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.internal(ctx, "filter related", err)
	}
	return &chatv1.FilterRelatedResponse{RelatedUserIds: related}, nil
}
