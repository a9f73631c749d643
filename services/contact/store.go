package contact

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// Store is the storage ContactService needs. Every change of an owner's
// relation to another user runs under a lock of the owner, so changes of
// one owner are serialized: it reads the relation as it then is and, if
// anything changed, appends it as the owner's next user event (see
// [ChangedEvent]) with the change, returning the stored event; nil when
// nothing changed. Implementations wrap their dependency's errors with %w,
// so errcode can tell an outage from a bug.
type Store interface {
	// AddContact adds user to owner's contacts with alias, or sets the
	// alias of a contact; the contact is returned as it now is.
	AddContact(ctx context.Context, owner, user uuid.UUID, alias string) (Contact, *chatv1.UserEvent, error)
	// RemoveContact removes user from owner's contacts.
	RemoveContact(ctx context.Context, owner, user uuid.UUID) (*chatv1.UserEvent, error)
	// Block records the block; Unblock lifts it.
	Block(ctx context.Context, b Block) (*chatv1.UserEvent, error)
	Unblock(ctx context.Context, b Block) (*chatv1.UserEvent, error)

	// Contacts returns up to limit of owner's contacts after the user id
	// after, in user id order.
	Contacts(ctx context.Context, owner, after uuid.UUID, limit int) ([]Contact, error)
	// BlockedUsers returns up to limit of the users blocker blocked, after
	// the user id after, in user id order.
	BlockedUsers(ctx context.Context, blocker, after uuid.UUID, limit int) ([]BlockedUser, error)
	// Blocks returns up to limit blocks after after in (blocker, blocked)
	// order: every block of every user, a page at a time.
	Blocks(ctx context.Context, after Block, limit int) ([]Block, error)

	// SyncBlock calls apply with whether b is a block, holding the
	// blocker's lock, so that the mirror writes of one blocker happen in
	// the order of its changes and the last one sees the final state.
	SyncBlock(ctx context.Context, b Block, apply func(blocked bool) error) error
	// SyncBlocks is SyncBlock for many pairs: holding all their blockers'
	// locks, it calls apply with those of pairs that are blocks and those
	// that are not.
	SyncBlocks(ctx context.Context, pairs []Block, apply func(blocks, stale []Block) error) error
}

// Errors a Store reports; the service gives them their codes.
var (
	// ErrNoAccount: the owner of a change does not exist (any more).
	ErrNoAccount = errors.New("contact: owner not found")
	// ErrNoUser: the other user of a change does not exist.
	ErrNoUser = errors.New("contact: user not found")
)

// Block is one user blocking another.
type Block struct{ Blocker, Blocked uuid.UUID }

// Contact is one entry of an owner's contact list.
type Contact struct {
	UserID     uuid.UUID
	Alias      string
	CreateTime time.Time
}

// BlockedUser is one entry of an owner's block list.
type BlockedUser struct {
	UserID     uuid.UUID
	CreateTime time.Time
}

// Relation is what an owner has recorded about another user.
type Relation struct {
	Contact, Blocked bool
	Alias            string
}

// ChangedEvent is the user event a store appends for an owner whose
// relation to other changed to r.
func ChangedEvent(other uuid.UUID, r Relation) *chatv1.UserEvent {
	return &chatv1.UserEvent{Kind: &chatv1.UserEvent_ContactChanged{
		ContactChanged: &chatv1.ContactChanged{UserId: other.String(), Contact: r.Contact, Blocked: r.Blocked, Alias: r.Alias},
	}}
}

// BlockMirror is the copy of the blocks that the presence service reads,
// having no access to the store: written after every committed block or
// unblock, and rebuilt by [Service.ResyncBlockers].
type BlockMirror interface {
	AddBlocks(ctx context.Context, blocks []Block) error
	RemoveBlocks(ctx context.Context, blocks []Block) error
	// ScanBlocks calls fn with every block the mirror holds, a page at a
	// time; a block may come twice. fn may remove blocks meanwhile.
	ScanBlocks(ctx context.Context, fn func([]Block) error) error
}
