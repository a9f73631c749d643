package presence

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	"github.com/wagglechat/waggle/errcode"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
)

// MaxPresenceUsers bounds GetPresence.
const MaxPresenceUsers = 500

// Visibility decides whose presence a viewer may see; blocking and privacy
// rules plug in here. Hidden users look offline with no last-seen time, as
// if never seen, so a viewer cannot tell they are hidden.
type Visibility interface {
	// Hidden returns the subset of userIDs hidden from viewerID. A
	// *connect.Error keeps its code; other errors become Unavailable.
	Hidden(ctx context.Context, viewerID string, userIDs []string) (map[string]bool, error)
}

// SessionReader tells what the registry knows of users: their live
// sessions and when they were last seen. *Registry is one.
type SessionReader interface {
	// UserStates answers for each of userIDs (without duplicates), in order.
	UserStates(ctx context.Context, userIDs []string, withLastSeen bool) ([]UserState, error)
}

// ServiceConfig tunes [NewService]. The zero value is usable.
type ServiceConfig struct {
	// Visibility filters what a viewer sees. Zero: every authenticated
	// caller sees everyone's presence.
	Visibility Visibility
}

// Service implements the public PresenceService.
type Service struct {
	reg        SessionReader
	log        *slog.Logger
	visibility Visibility
}

var _ presencev1connect.PresenceServiceHandler = (*Service)(nil)

// NewService answers presence questions from reg. A nil logger discards logs.
func NewService(reg SessionReader, logger *slog.Logger, cfg ServiceConfig) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{reg: reg, log: logger, visibility: cfg.Visibility}
}

// GetPresence tells, for up to MaxPresenceUsers users in one round trip,
// whether each is online (with their number of live devices) or offline
// (with when they were last seen, if known). Users are answered once each,
// in request order.
func (s *Service) GetPresence(ctx context.Context, req *presencev1.GetPresenceRequest) (*presencev1.GetPresenceResponse, error) {
	viewer, ok := auth.FromContext(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("presence: no caller identity"))
	}
	ids, err := checkUserIDs(req.GetUserIds(), MaxPresenceUsers)
	if err != nil {
		return nil, err
	}
	res := &presencev1.GetPresenceResponse{Presences: make([]*presencev1.UserPresence, 0, len(ids))}
	if len(ids) == 0 {
		return res, nil
	}
	var hidden map[string]bool
	if s.visibility != nil {
		if hidden, err = s.visibility.Hidden(ctx, viewer.UserID, ids); err != nil {
			return nil, errcode.Public(ctx, s.log, "presence: check visibility", err)
		}
	}
	visible := make([]string, 0, len(ids))
	for _, id := range ids {
		if !hidden[id] {
			visible = append(visible, id)
		}
	}
	states, err := s.reg.UserStates(ctx, visible, true)
	if err != nil {
		return nil, errcode.Public(ctx, s.log, "presence: load presence", err)
	}
	byUser := make(map[string]UserState, len(states))
	for _, st := range states {
		byUser[st.UserID] = st
	}
	for _, id := range ids {
		p := &presencev1.UserPresence{UserId: id, Status: presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE, Hidden: hidden[id]}
		st := byUser[id] // zero for hidden users
		switch {
		case len(st.Sessions) > 0:
			p.Status = presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE
			p.DeviceCount = uint32(countDevices(st.Sessions))
		case !st.LastSeen.IsZero():
			p.LastSeenTime = timestamppb.New(st.LastSeen)
		}
		res.Presences = append(res.Presences, p)
	}
	return res, nil
}

func countDevices(sessions []*presencev1.Session) int {
	devices := make(map[string]struct{}, len(sessions))
	for _, s := range sessions {
		devices[s.GetDeviceId()] = struct{}{}
	}
	return len(devices)
}
