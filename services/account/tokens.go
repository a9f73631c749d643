package account

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
)

// grant is a fresh token pair and what is stored of it.
type grant struct {
	tokens        *accountv1.Tokens
	refreshHash   []byte
	refreshExpire time.Time
}

func (s *Service) grant(id auth.Identity, now time.Time) (grant, error) {
	access, accessExpire, err := s.signer.Issue(id, now)
	if err != nil {
		return grant{}, err
	}
	refresh, hash := auth.NewRefreshToken()
	refreshExpire := now.Add(s.refreshTTL)
	return grant{
		tokens: &accountv1.Tokens{
			AccessToken:            access,
			AccessTokenExpireTime:  timestamppb.New(accessExpire),
			RefreshToken:           refresh,
			RefreshTokenExpireTime: timestamppb.New(refreshExpire),
		},
		refreshHash:   hash,
		refreshExpire: refreshExpire,
	}, nil
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// addDevice logs a new device of userID in and returns its id and tokens.
func (s *Service) addDevice(ctx context.Context, db execer, userID uuid.UUID, name string, now time.Time) (uuid.UUID, *accountv1.Tokens, error) {
	deviceID := uuid.New()
	g, err := s.grant(auth.Identity{UserID: userID.String(), DeviceID: deviceID.String()}, now)
	if err != nil {
		return uuid.UUID{}, nil, fmt.Errorf("issue tokens: %w", err)
	}
	_, err = db.Exec(ctx, `
		INSERT INTO devices (id, user_id, name, refresh_hash, refresh_expire_time, create_time)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		deviceID, userID, name, g.refreshHash, g.refreshExpire, now)
	if err != nil {
		return uuid.UUID{}, nil, fmt.Errorf("insert device: %w", err)
	}
	return deviceID, g.tokens, nil
}
