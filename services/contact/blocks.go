package contact

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	contactv1 "github.com/wagglechat/waggle/gen/go/waggle/contact/v1"
)

// BlockUser blocks user_id: they can no longer start or send in a direct
// conversation with the caller, and see the caller offline and never seen.
// They are not told. Blocking keeps them in the caller's contacts, so that
// unblocking restores the list as it was; remove the contact separately if
// wanted. Blocking a blocked user succeeds and changes nothing.
//
// If the block is saved but the presence mirror cannot be updated, the call
// fails with Unavailable; calling again completes it.
func (s *Service) BlockUser(ctx context.Context, req *contactv1.BlockUserRequest) (*contactv1.BlockUserResponse, error) {
	uid, other, err := s.change(ctx, "block user", req.GetUserId(), func(uid, other uuid.UUID) (*chatv1.UserEvent, error) {
		return s.store.Block(ctx, Block{Blocker: uid, Blocked: other})
	})
	if err != nil {
		return nil, err
	}
	// Also when nothing changed: a retry completes a mirror write that failed.
	if err := s.mirrorBlock(ctx, Block{Blocker: uid, Blocked: other}); err != nil {
		s.log.ErrorContext(ctx, "contact: mirror block", "blocker", uid, "blocked", other, "err", err)
		return nil, connect.NewError(connect.CodeUnavailable,
			errors.New("the user is blocked, but hiding your presence from them failed; call BlockUser again"))
	}
	return &contactv1.BlockUserResponse{}, nil
}

// UnblockUser lifts the caller's block of user_id. Unblocking a user who is
// not blocked succeeds and changes nothing; a user_id that names no user is
// NotFound. Like BlockUser, it fails with Unavailable if the presence
// mirror cannot be updated, and calling again completes it.
func (s *Service) UnblockUser(ctx context.Context, req *contactv1.UnblockUserRequest) (*contactv1.UnblockUserResponse, error) {
	uid, other, err := s.change(ctx, "unblock user", req.GetUserId(), func(uid, other uuid.UUID) (*chatv1.UserEvent, error) {
		return s.store.Unblock(ctx, Block{Blocker: uid, Blocked: other})
	})
	if err != nil {
		return nil, err
	}
	if err := s.mirrorBlock(ctx, Block{Blocker: uid, Blocked: other}); err != nil {
		s.log.ErrorContext(ctx, "contact: mirror unblock", "blocker", uid, "blocked", other, "err", err)
		return nil, connect.NewError(connect.CodeUnavailable,
			errors.New("the user is unblocked, but showing them your presence again failed; call UnblockUser again"))
	}
	return &contactv1.UnblockUserResponse{}, nil
}

// ListBlockedUsers pages through the users the caller blocked, in user id
// order (page_size default 100, at most 1000).
func (s *Service) ListBlockedUsers(ctx context.Context, req *contactv1.ListBlockedUsersRequest) (*contactv1.ListBlockedUsersResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeToken(blockedList, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	blocked, err := s.store.BlockedUsers(ctx, uid, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list blocked users", err)
	}
	res := &contactv1.ListBlockedUsersResponse{}
	for _, b := range blocked[:min(len(blocked), size)] {
		res.BlockedUsers = append(res.BlockedUsers, &contactv1.BlockedUser{UserId: b.UserID.String(), CreateTime: timestamppb.New(b.CreateTime)})
	}
	if len(blocked) > size {
		res.NextPageToken = encodeToken(blockedList, blocked[size-1].UserID)
	}
	return res, nil
}

// mirrorBlock makes the mirror hold b exactly if the store does. It runs
// after the change committed, under the blocker's lock (Store.SyncBlock):
// concurrent blocks and unblocks of one pair then write the mirror in
// commit order, the last one reading the final state, so the mirror cannot
// be left showing an earlier state. It finishes even if the caller goes.
func (s *Service) mirrorBlock(ctx context.Context, b Block) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), postCommitTimeout)
	defer cancel()
	return s.store.SyncBlock(ctx, b, func(blocked bool) error {
		if blocked {
			return s.mirror.AddBlocks(ctx, []Block{b})
		}
		return s.mirror.RemoveBlocks(ctx, []Block{b})
	})
}

// resyncBatch is how many blocks ResyncBlockers handles per step (one
// store transaction and one mirror write).
const resyncBatch = 1000

// ResyncBlockers rebuilds the mirror of the blocks that the presence
// service reads (`waggle resync-blockers` runs it for the Redis mirror): it
// adds every block, then removes every entry of the mirror the store does
// not hold (a mirror write that failed, users deleted since, leftovers of
// another deployment). A mirror that lives in memory is filled with it at
// start.
//
// A mirror that outlives the process, as Redis does, needs it only after it
// lost data (a Redis restart without persistence, a failover to a replica
// that was behind, a flush); until then, blocked users may see their
// blockers' presence. Messaging is not affected: the chat service reads the
// store.
//
// It may run while the service is serving: each step holds the locks that
// BlockUser and UnblockUser hold while they write the mirror
// (Store.SyncBlocks), so it never undoes a concurrent change.
func (s *Service) ResyncBlockers(ctx context.Context) error {
	start := time.Now()
	added, err := s.resyncAdd(ctx)
	if err != nil {
		return fmt.Errorf("contact: resync blockers: %w", err)
	}
	removed, err := s.resyncPrune(ctx)
	if err != nil {
		return fmt.Errorf("contact: resync blockers: %w", err)
	}
	s.log.InfoContext(ctx, "contact: resynced the blocks mirror", "blocks", added, "stale_removed", removed,
		"took", time.Since(start))
	return nil
}

// resyncAdd adds every block to the mirror, in (blocker, blocked) order,
// and returns how many it found.
func (s *Service) resyncAdd(ctx context.Context) (int, error) {
	var after Block
	total := 0
	for {
		page, err := s.store.Blocks(ctx, after, resyncBatch)
		if err != nil {
			return total, err
		}
		if len(page) == 0 {
			return total, nil
		}
		// Read again under the blockers' locks: a block lifted since the
		// page was read must not be put back.
		err = s.store.SyncBlocks(ctx, page, func(blocks, stale []Block) error {
			total += len(blocks)
			if len(blocks) > 0 {
				if err := s.mirror.AddBlocks(ctx, blocks); err != nil {
					return fmt.Errorf("mirror blocks: %w", err)
				}
			}
			if len(stale) > 0 {
				if err := s.mirror.RemoveBlocks(ctx, stale); err != nil {
					return fmt.Errorf("mirror unblocks: %w", err)
				}
			}
			return nil
		})
		if err != nil || len(page) < resyncBatch {
			return total, err
		}
		after = page[len(page)-1]
	}
}

// resyncPrune removes the mirror's entries that the store does not hold,
// and returns how many.
func (s *Service) resyncPrune(ctx context.Context) (int, error) {
	removed := 0
	err := s.mirror.ScanBlocks(ctx, func(page []Block) error {
		for len(page) > 0 {
			n := min(len(page), resyncBatch)
			// Under the blockers' locks, so that a block committed since
			// the scan is not removed.
			err := s.store.SyncBlocks(ctx, page[:n], func(_, stale []Block) error {
				if len(stale) == 0 {
					return nil
				}
				if err := s.mirror.RemoveBlocks(ctx, stale); err != nil {
					return fmt.Errorf("mirror unblocks: %w", err)
				}
				removed += len(stale)
				return nil
			})
			if err != nil {
				return err
			}
			page = page[n:]
		}
		return nil
	})
	return removed, err
}
