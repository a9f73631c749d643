package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
)

// groupState is a set-up on a Waggle server: its users (Members) and,
// for fanout runs, their one group. Registration costs each user an
// argon2id hash on the server, so it is kept in a file and later runs
// only refresh tokens (which rotates the refresh tokens: the file is
// rewritten each time).
type groupState struct {
	Server       string        `json:"server"`
	Conversation string        `json:"conversation_id"`
	Members      []stateMember `json:"members"`  // Members[0] created the group and sends
	InGroup      int           `json:"in_group"` // Members[:InGroup] are in the group

	mu sync.Mutex // the refresh tokens, while refreshes run in parallel
}

func (s *groupState) userIDs(from, to int) []string {
	ids := make([]string, 0, to-from)
	for _, m := range s.Members[from:to] {
		ids = append(ids, m.UserID)
	}
	return ids
}

type stateMember struct {
	UserID       string `json:"user_id"`
	DeviceID     string `json:"device_id"`
	RefreshToken string `json:"refresh_token"`
}

// loadState reads path; a missing file is an empty state.
func loadState(path string) (*groupState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &groupState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s groupState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return &s, nil
}

// save writes the state atomically: a lost file would lose refresh tokens
// that were already rotated.
func (s *groupState) save(path string) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// setupGroup makes sure api has a group of exactly members users, kept in
// statePath ("" keeps nothing), and returns the state with fresh access
// tokens for the first online members.
func setupGroup(ctx context.Context, log *slog.Logger, api string, hc *http.Client, statePath string, members, online, parallel int) (*groupState, []string, error) {
	st := &groupState{}
	if statePath != "" {
		var err error
		if st, err = loadState(statePath); err != nil {
			return nil, nil, err
		}
	}
	if st.Server != "" && st.Server != api {
		return nil, nil, configErrorf("state %s is for %s, not %s: use another --state", statePath, st.Server, api)
	}
	if len(st.Members) > members {
		return nil, nil, configErrorf("state %s holds a group of %d members, not %d: use another --state", statePath, len(st.Members), members)
	}
	save := func() error {
		if statePath == "" {
			return nil
		}
		return st.save(statePath)
	}
	tokens := make([]string, online)
	fresh := map[int]bool{}
	if have := len(st.Members); have < members {
		log.Info("bench: registering members", "have", have, "want", members)
		accounts, err := register(ctx, api, hc, members-have, parallel)
		for _, a := range accounts {
			if a.id == "" {
				continue // failed or not reached
			}
			if n := len(st.Members); n < online {
				tokens[n], fresh[n] = a.token, true
			}
			st.Members = append(st.Members, stateMember{UserID: a.id, DeviceID: a.device, RefreshToken: a.refresh})
		}
		st.Server = api
		if serr := save(); err != nil || serr != nil {
			return nil, nil, fmt.Errorf("bench: %w", errors.Join(err, serr))
		}
	}
	if st.InGroup < len(st.Members) {
		if !fresh[0] {
			tok, err := refreshMember(ctx, api, hc, st, 0)
			if err != nil {
				return nil, nil, errors.Join(err, save())
			}
			tokens[0], fresh[0] = tok, true
		}
		svc := chatv1connect.NewConversationServiceClient(hc, api, bearer(tokens[0]))
		if st.Conversation == "" {
			first := st.userIDs(1, min(len(st.Members), maxMembersPerCall+1))
			res, err := svc.CreateGroupConversation(ctx, &chatv1.CreateGroupConversationRequest{Title: "bench fanout", MemberUserIds: first})
			if err != nil {
				return nil, nil, errors.Join(fmt.Errorf("bench: create the group: %w", err), save())
			}
			st.Conversation, st.InGroup = res.GetConversation().GetConversationId(), 1+len(first)
		}
		if err := addMembers(ctx, svc, st.Conversation, st.userIDs(st.InGroup, len(st.Members))); err != nil {
			return nil, nil, errors.Join(fmt.Errorf("bench: %w", err), save())
		}
		st.InGroup = len(st.Members)
		if err := save(); err != nil {
			return nil, nil, err
		}
	}
	// The others' refresh tokens stay as they are: only sessions need one.
	err := forEach(ctx, online, 16, func(ctx context.Context, i int) error {
		if fresh[i] {
			return nil
		}
		var err error
		tokens[i], err = refreshMember(ctx, api, hc, st, i)
		return err
	})
	if serr := save(); err != nil || serr != nil {
		return nil, nil, fmt.Errorf("bench: refresh tokens: %w", errors.Join(err, serr))
	}
	return st, tokens, nil
}

// refreshMember trades member i's refresh token for a new pair and keeps
// the new refresh token in st.
func refreshMember(ctx context.Context, api string, hc *http.Client, st *groupState, i int) (string, error) {
	st.mu.Lock()
	old := st.Members[i].RefreshToken
	st.mu.Unlock()
	res, err := accountv1connect.NewAccountServiceClient(hc, api).RefreshToken(ctx, &accountv1.RefreshTokenRequest{RefreshToken: old})
	if err != nil {
		return "", fmt.Errorf("refresh member %d's token: %w", i, err)
	}
	st.mu.Lock()
	st.Members[i].RefreshToken = res.GetTokens().GetRefreshToken()
	st.mu.Unlock()
	return res.GetTokens().GetAccessToken(), nil
}

// setupUsers returns n users with fresh access tokens: registered now, or
// kept in statePath ("" keeps nothing) from an earlier run against api,
// whose refresh tokens are traded for new ones. The state's group, if a
// fanout run made one, is left as it is. Conversations are not kept: a
// direct conversation created again is the same one.
func setupUsers(ctx context.Context, api string, hc *http.Client, statePath string, n, parallel int) ([]account, error) {
	if statePath == "" {
		users, err := register(ctx, api, hc, n, parallel)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		return users, nil
	}
	st, err := loadState(statePath)
	if err != nil {
		return nil, err
	}
	if st.Server != "" && st.Server != api {
		return nil, configErrorf("state %s is for %s, not %s: use another --state", statePath, st.Server, api)
	}
	users := make([]account, n)
	fresh := map[int]bool{}
	if have := len(st.Members); have < n {
		registered, err := register(ctx, api, hc, n-have, parallel)
		for _, a := range registered {
			if a.id == "" {
				continue // failed or not reached
			}
			i := len(st.Members)
			users[i], fresh[i] = a, true
			st.Members = append(st.Members, stateMember{UserID: a.id, DeviceID: a.device, RefreshToken: a.refresh})
		}
		st.Server = api
		if serr := st.save(statePath); err != nil || serr != nil {
			return nil, fmt.Errorf("bench: %w", errors.Join(err, serr))
		}
	}
	err = forEach(ctx, n, 16, func(ctx context.Context, i int) error {
		if fresh[i] {
			return nil
		}
		token, err := refreshMember(ctx, api, hc, st, i)
		m := st.Members[i]
		users[i] = account{id: m.UserID, device: m.DeviceID, token: token}
		return err
	})
	if serr := st.save(statePath); err != nil || serr != nil {
		return nil, fmt.Errorf("bench: refresh tokens: %w", errors.Join(err, serr))
	}
	return users, nil
}
