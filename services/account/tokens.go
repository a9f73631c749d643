package account

import (
	"fmt"
	"time"

	"github.com/google/uuid"
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

// newDevice returns a new device of userID, to be stored, and its tokens.
func (s *Service) newDevice(userID uuid.UUID, name string, now time.Time) (Device, *accountv1.Tokens, error) {
	d := Device{ID: uuid.New(), UserID: userID, Name: name, CreateTime: now}
	g, err := s.grant(auth.Identity{UserID: userID.String(), DeviceID: d.ID.String()}, now)
	if err != nil {
		return Device{}, nil, fmt.Errorf("issue tokens: %w", err)
	}
	d.RefreshHash, d.RefreshExpireTime = g.refreshHash, g.refreshExpire
	return d, g.tokens, nil
}
