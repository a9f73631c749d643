package chat

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

// The chat service keeps its state behind Store; the SQL lives in the
// adapters, one package per dependency (packages postgres, sqlite). The domain rules (who may do
// what, which event a change appends, what is notified) stay in this
// package; a Store only reads and writes rows, and the few rules that must
// be evaluated where the rows are (who may write, below) are spelled out in
// the method contracts so every adapter applies the same ones.
//
// Terms used in the contracts:
//
//   - A current member of a conversation is a members row with no left seq.
//   - A user may write to a conversation when the user is a current member
//     and, in a direct conversation, the other member has not blocked the
//     user (the blocks table, blocker blocked the user).
//   - A user sees a conversation's events from its joined seq (exclusive)
//     up to its left seq (inclusive) if it left.
//   - Seqs of a conversation are gap-free and in commit order: every append
//     takes the conversation's write lock (a row lock in Postgres, the one
//     writer in SQLite) for the rest of its transaction.
//
// Errors: the sentinels below, possibly wrapped; anything else is a
// failure of the store, wrapped with %w so errcode still sees the driver's
// error (a lost connection is unavailable, a serialization failure or
// deadlock aborted).

var (
	// ErrNotFound: the row asked for does not exist or the caller may not
	// see it; the service says which thing was not found.
	ErrNotFound = errors.New("chat store: not found")
	// ErrBlocked: the other member of a direct conversation blocked the
	// writer.
	ErrBlocked = errors.New("chat store: blocked")
	// ErrBadCursor: a sync cursor the store did not issue.
	ErrBadCursor = errors.New("chat store: malformed sync cursor")
)

// EventKind is an event's kind as stored. Never renumber: rows keep them.
type EventKind int16

const (
	KindMessage             EventKind = 1
	KindMessageEdited       EventKind = 2
	KindMessageRecalled     EventKind = 3
	KindReactionAdded       EventKind = 4
	KindReactionRemoved     EventKind = 5
	KindConversationCreated EventKind = 6
	KindMembersAdded        EventKind = 7
	KindMemberRemoved       EventKind = 8
	KindConversationRenamed EventKind = 9
	KindMemberRoleChanged   EventKind = 10
)

// EventRow is one stored event as read back. For a message (KindMessage)
// Body is the encoded chatv1.MessageContent as it is now (empty once
// recalled); for other kinds the encoded chatv1.Event holding only Kind.
type EventRow struct {
	Conv        uuid.UUID
	Seq         int64
	Kind        EventKind
	Actor       uuid.UUID
	Device      *uuid.UUID
	Created     time.Time
	Body        []byte
	MessageID   *uuid.UUID // messages only
	ClientMsgID *string    // messages only
	EditTime    *time.Time // messages only
	RecallTime  *time.Time // messages only
}

// NewEvent is an event to append that is not a message (messages go
// through Store.AppendMessages).
type NewEvent struct {
	Actor  uuid.UUID
	Device *uuid.UUID // nil for internal callers
	Kind   EventKind
	// Target is the seq of the message the event is about (edits, recalls,
	// reactions), or nil.
	Target *int64
	Body   []byte // the encoded chatv1.Event holding only Kind
	// Prev is, on an edit or recall, the encoded content it replaced, kept
	// so members who left before it see the message as it was; else nil.
	Prev []byte
	// MustWrite refuses the append unless Actor may write (false only for a
	// conversation's creation event).
	MustWrite bool
}

// NewMessage is one send of a batch.
type NewMessage struct {
	Actor       uuid.UUID
	Device      *uuid.UUID
	Body        []byte // encoded chatv1.MessageContent
	MessageID   uuid.UUID
	ClientMsgID string
}

// StoredMessage is the outcome of one NewMessage: Stored with its seq and
// time, or not stored (the sender may not write, or sent this client_msg_id
// before).
type StoredMessage struct {
	Stored bool
	Seq    int64
	At     time.Time
}

// Change is an event about a message (edit, recall, reaction).
type Change struct {
	EventRow
	Target int64
	Prev   []byte // NewEvent.Prev, nil if none
}

// ConversationRow is a conversation as one current member sees it.
type ConversationRow struct {
	ID          uuid.UUID
	Type        chatv1.ConversationType
	Title       string
	LastSeq     uint64
	MemberCount uint32
	Created     time.Time
	Updated     time.Time
	// The viewer's membership.
	Role      chatv1.MemberRole
	JoinedSeq uint64
	JoinTime  time.Time
	ReadSeq   uint64
	Muted     bool
	// Unread counts the viewer's unread messages: messages after
	// max(read seq, joined seq), up to its left seq, not its own, not
	// recalled, not hidden by it (DeleteMessagesForMe).
	Unread uint64
	// Peer is the other member of a direct conversation.
	Peer *uuid.UUID
	// Last is the newest message the viewer sees and has not hidden.
	Last *EventRow
}

// Membership is the caller's place in a conversation whose write lock it
// holds.
type Membership struct {
	Type  chatv1.ConversationType
	Role  chatv1.MemberRole
	Count int // current members
}

// ReadState is a member's read marker with its conversation's position,
// read under the member's row lock.
type ReadState struct {
	ReadSeq     int64
	LastSeq     int64
	MemberCount int
	Now         time.Time // the transaction's time, the marker's update time
}

// ReactionCount summarises one emoji on one message.
type ReactionCount struct {
	Seq   int64
	Emoji string
	Count uint32
	Mine  bool // the viewer is among them
}

// Delivery is a position a device acknowledged.
type Delivery struct {
	Conv, User, Device uuid.UUID
	Seq                int64
}

// Range is an inclusive seq range of one stream; To 0 means no end.
type Range struct {
	ID       uuid.UUID
	From, To int64
}

// ReceiptPage is one page of the read markers of a message's audience (the
// current members who joined before it, except its sender), with the
// audience's counts of members who have and have not read it.
type ReceiptPage struct {
	Read, Unread uint32
	Markers      []*chatv1.ReadMarker // ordered by user id
}

// SyncPage receives, in order, what a sync reads. Event is called for each
// conversation event the device lacks (grouped by conversation, in seq
// order; left is the user's left seq if it left that conversation), then
// UserEvent for each of the user's own events after the cursor, in seq
// order. Each returns false to end its part of the page there: the event
// passed with false is not part of the page and comes first next time.
type SyncPage struct {
	Event     func(ev EventRow, left *int64) (bool, error)
	UserEvent func(ev *chatv1.UserEvent) bool
}

// Store is the chat service's storage. Reads see committed state; each
// read is one consistent snapshot unless said otherwise.
type Store interface {
	// InTx runs fn in one transaction, committed if fn returns nil and
	// rolled back otherwise (fn's error is returned as it is). fn's reads
	// see its own writes. Only the locks the Tx methods name are promised
	// (Postgres: READ COMMITTED with row locks); a store that runs one
	// writing transaction at a time (SQLite, BEGIN IMMEDIATE) meets them
	// all.
	InTx(ctx context.Context, fn func(Tx) error) error

	// AppendMessages stores, in one transaction holding conv's write lock,
	// those of msgs whose actor may write and whose (actor, client_msg_id)
	// is not stored in conv yet, at consecutive seqs in msgs' order, all
	// with the transaction's time. The caller never passes one
	// (actor, client_msg_id) twice. The result is parallel to msgs. On an
	// error nothing is stored. A store may commit the batches of several
	// calls together (group commit) as long as each call's outcome is as
	// if it had its own transaction.
	AppendMessages(ctx context.Context, conv uuid.UUID, msgs []NewMessage) ([]StoredMessage, error)

	// CanWrite returns conv's current member count if user may write to
	// it; else ErrBlocked or ErrNotFound.
	CanWrite(ctx context.Context, conv, user uuid.UUID) (int, error)
	// MessageByClientID returns the message sender sent with clientMsgID in
	// conv, or ErrNotFound.
	MessageByClientID(ctx context.Context, conv, sender uuid.UUID, clientMsgID string) (EventRow, error)
	// Message returns message msgID of conv if viewer is a current member
	// who sees it (sent after viewer joined); else ErrNotFound.
	Message(ctx context.Context, conv, msgID, viewer uuid.UUID) (EventRow, error)

	// Conversation returns conv as viewer, a current member, sees it; else
	// ErrNotFound.
	Conversation(ctx context.Context, viewer, conv uuid.UUID) (ConversationRow, error)
	// ListConversations returns up to limit of the viewer's current
	// conversations ordered by (update time, id) descending, strictly
	// before (beforeTime, beforeID).
	ListConversations(ctx context.Context, viewer uuid.UUID, beforeTime time.Time, beforeID uuid.UUID, limit int) ([]ConversationRow, error)
	// Unread is ConversationRow.Unread of user in conv, counted up to its
	// left seq if it left (0 if it never was a member).
	Unread(ctx context.Context, user, conv uuid.UUID) (uint64, error)
	// Badge is the sum of Unread over user's current conversations it has
	// not muted.
	Badge(ctx context.Context, user uuid.UUID) (uint64, error)
	// ListMembers returns up to limit current members of conv with user id
	// above after, by user id, with Muted reported for viewer only; none if
	// viewer is not a current member.
	ListMembers(ctx context.Context, conv, viewer, after uuid.UUID, limit int) ([]*chatv1.Member, error)
	// Span returns user's joined and left seq in conv (left nil while a
	// current member); ErrNotFound if user never was a member.
	Span(ctx context.Context, conv, user uuid.UUID) (joined int64, left *int64, err error)
	// Messages returns up to limit messages of conv with seq in [lo, hi]
	// not hidden by viewer, ascending if forward else descending.
	Messages(ctx context.Context, conv, viewer uuid.UUID, lo, hi int64, forward bool, limit int) ([]EventRow, error)
	// MessageChanges returns the edit, recall and reaction events (any
	// seq) of conv whose target is one of targets, in seq order. Former
	// members' history is rewound from them (history.go).
	MessageChanges(ctx context.Context, conv uuid.UUID, targets []int64) ([]Change, error)
	// Reactions returns the reaction counts of conv's messages at seqs,
	// ordered by seq, then by each emoji's first use.
	Reactions(ctx context.Context, conv, viewer uuid.UUID, seqs []int64) ([]ReactionCount, error)
	// ReactionUsers returns up to limit users who reacted with emoji to the
	// message at seq, with id above after, by id.
	ReactionUsers(ctx context.Context, conv uuid.UUID, seq int64, emoji string, after uuid.UUID, limit int) ([]uuid.UUID, error)
	// MessageSender returns the sender of the message at seq of conv if
	// viewer sees it (Terms: joined before it, left at or after it); else
	// ErrNotFound.
	MessageSender(ctx context.Context, conv, viewer uuid.UUID, seq int64) (uuid.UUID, error)
	// ReadReceipts returns the audience's counts of the message at seq
	// sent by sender, and up to limit markers of those who have read it
	// (read) or not (!read), with user id above after.
	ReadReceipts(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID, read bool, after uuid.UUID, limit int) (ReceiptPage, error)
	// DeliveryState returns the size of the message's audience (see
	// ReceiptPage) and, for each of its members some device of which
	// acknowledged seq, those devices (at most 10,000 members, by user id).
	DeliveryState(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID) (uint32, []*chatv1.MemberDelivery, error)
	// ReportDeliveries moves each device's acknowledged position forward
	// (never back); positions of users who never were members are dropped.
	ReportDeliveries(ctx context.Context, ds []Delivery) error
	// Related returns those of ids that viewer may see the presence of:
	// itself, its contacts, and current co-members of any conversation.
	Related(ctx context.Context, viewer uuid.UUID, ids []uuid.UUID) ([]string, error)

	// ListRoutes returns, for each of users that exists, its last user
	// event seq and its current group memberships with their joined and
	// last seqs, in one snapshot.
	ListRoutes(ctx context.Context, users []uuid.UUID) ([]*chatv1.UserRoutes, error)
	// ReadEvents returns, for each range, up to limit events of the
	// conversation, and for each user range up to limit of the user's own
	// events, in seq order.
	ReadEvents(ctx context.Context, convs, users []Range, limit int) ([][]EventRow, [][]*chatv1.UserEvent, error)
	// DirectChanges lists users' direct conversations updated at or after
	// since, with their last seqs.
	DirectChanges(ctx context.Context, users []uuid.UUID, since time.Time) ([]*chatv1.DirectChange, error)

	// Sync reads the page of what a device of user lacks after cursor (""
	// for everything) into page, and returns the cursor to continue from
	// and whether more is waiting. known holds positions the client says it
	// has (events up to them are not sent again). The cursor is the store's
	// own (ErrBadCursor if it is not one it issued); each store keeps its
	// own watermark scheme, but Sync must never skip an event committed
	// after the cursor was issued, and should rarely repeat one.
	Sync(ctx context.Context, user uuid.UUID, cursor string, known map[uuid.UUID]int64, limit int, page SyncPage) (next string, more bool, err error)
	// SyncCursor returns a cursor from which Sync returns everything that
	// commits from now on.
	SyncCursor(ctx context.Context) (string, error)

	FanoutStore
}

// Tx is what a Store transaction offers: the locks and writes of the
// service's changes. Methods that lock say so; a lock is held until the
// transaction ends. Lock order, to stay free of deadlocks: a message
// (LockMessage) before its conversation (LockMembership, AppendEvent).
type Tx interface {
	// MissingUser returns the first of ids that is not a user, or uuid.Nil.
	MissingUser(ctx context.Context, ids []uuid.UUID) (uuid.UUID, error)
	// IsBlockedBy reports whether by blocked user.
	IsBlockedBy(ctx context.Context, user, by uuid.UUID) (bool, error)

	// CreateDirect creates the direct conversation id of the pair a, b
	// with both as members (role member, joined seq 0), unless the pair
	// has one: then it returns that one's id and created false.
	CreateDirect(ctx context.Context, id, a, b uuid.UUID) (conv uuid.UUID, created bool, err error)
	// CreateGroup creates group id titled title with owner (role owner)
	// and members (role member), all with joined seq 0.
	CreateGroup(ctx context.Context, id uuid.UUID, title string, owner uuid.UUID, members []uuid.UUID) error

	// AppendEvent takes conv's write lock, then stores ev as its next
	// event at the transaction's time and returns its seq and time. With
	// ev.MustWrite, it fails with ErrBlocked or ErrNotFound unless ev.Actor
	// may write, checked after the lock is taken.
	AppendEvent(ctx context.Context, conv uuid.UUID, ev NewEvent) (int64, time.Time, error)
	// AppendUserEvent stores body as user's next own event and returns it
	// with its seq and time. It serialises the user's appends.
	AppendUserEvent(ctx context.Context, user uuid.UUID, body *chatv1.UserEvent) (*chatv1.UserEvent, error)

	// LockMembership takes conv's write lock and returns the caller's
	// membership; ErrNotFound unless user is a current member.
	LockMembership(ctx context.Context, conv, user uuid.UUID) (Membership, error)
	// MemberRole returns a current member's role; else ErrNotFound.
	MemberRole(ctx context.Context, conv, user uuid.UUID) (chatv1.MemberRole, error)
	// NotMembers returns those of ids that are not current members of conv.
	NotMembers(ctx context.Context, conv uuid.UUID, ids []uuid.UUID) ([]uuid.UUID, error)
	// AddMembers makes users current members (role member) who see conv
	// from joined on (joined seq and read seq = joined, a returning member
	// starts over) and adds them to the member count.
	AddMembers(ctx context.Context, conv uuid.UUID, users []uuid.UUID, joined int64) error
	// RemoveMember ends user's membership at left and counts one member
	// less.
	RemoveMember(ctx context.Context, conv, user uuid.UUID, left int64) error
	// SetRole sets a member's role.
	SetRole(ctx context.Context, conv, user uuid.UUID, role chatv1.MemberRole) error
	// SetTitle renames conv.
	SetTitle(ctx context.Context, conv uuid.UUID, title string) error
	// SetMuted locks user's membership of conv and sets its muted flag;
	// changed is false if it already was muted. ErrNotFound unless user
	// is a current member.
	SetMuted(ctx context.Context, conv, user uuid.UUID, muted bool) (changed bool, err error)
	// LockReadState locks user's membership of conv and returns its read
	// state; ErrNotFound unless user is a current member.
	LockReadState(ctx context.Context, conv, user uuid.UUID) (ReadState, error)
	// SetReadSeq sets user's read seq in conv.
	SetReadSeq(ctx context.Context, conv, user uuid.UUID, seq int64) error

	// LockMessage is Store.Message, locking the message's row.
	LockMessage(ctx context.Context, conv, msgID, viewer uuid.UUID) (EventRow, error)
	// AddReaction records user's emoji on the message at seq; false if it
	// was there.
	AddReaction(ctx context.Context, conv uuid.UUID, seq int64, emoji string, user uuid.UUID) (bool, error)
	// RemoveReaction removes it; false if it was not there.
	RemoveReaction(ctx context.Context, conv uuid.UUID, seq int64, emoji string, user uuid.UUID) (bool, error)
	// EditMessage replaces the content of the message at seq and returns
	// its edit time (the transaction's time).
	EditMessage(ctx context.Context, conv uuid.UUID, seq int64, body []byte) (time.Time, error)
	// RecallMessage empties the message at seq (recall time set, body
	// empty), deletes its reactions, and sets the body of each earlier
	// edit of it to editBody (the edit without its content).
	RecallMessage(ctx context.Context, conv uuid.UUID, seq int64, editBody []byte) error
	// HideMessages hides msgIDs from user's own view of conv and returns
	// those that were not hidden yet. ErrNotFound, hiding none, unless
	// every id is a message of conv user sees (Terms).
	HideMessages(ctx context.Context, user, conv uuid.UUID, msgIDs []uuid.UUID) ([]uuid.UUID, error)
}

// FanoutStore is what the Fanout reads.
type FanoutStore interface {
	// RecentEvents returns the newest event of each conversation updated
	// within window.
	RecentEvents(ctx context.Context, window time.Duration) ([]EventRow, error)
	// Route returns conv's type and, for a direct conversation, its two
	// members; ErrNotFound if there is no such conversation.
	Route(ctx context.Context, conv uuid.UUID) (direct bool, pair [2]uuid.UUID, err error)
	// PushRecipients returns up to limit current members of conv other
	// than sender who joined before seq.
	PushRecipients(ctx context.Context, conv uuid.UUID, seq int64, sender uuid.UUID, limit int) ([]string, error)
	// PushDetails returns conv's title and sender's display name ("" if
	// none).
	PushDetails(ctx context.Context, conv, sender uuid.UUID) (title, senderName string, err error)
	// PushBadges returns, for those of users who are current members of
	// conv and have not muted it, their Badge counted up to at most max.
	PushBadges(ctx context.Context, conv uuid.UUID, users []string, max int) (map[string]uint64, error)
}
