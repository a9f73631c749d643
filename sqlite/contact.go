package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/contact"
)

// ContactStore is contact.Store over the contacts and blocks tables.
//
// contact.Store's owner locks need no statement here: every change, and
// every SyncBlock(s), runs in a write transaction, and write transactions
// run one at a time (one write connection, BEGIN IMMEDIATE), so each holds
// every owner's lock until it ends. SyncBlock(s) therefore call apply with
// all writers waiting: a mirror write holds up the store meanwhile.
type ContactStore struct{ db *DB }

var _ contact.Store = (*ContactStore)(nil)

// NewContactStore returns the contact store on db.
func NewContactStore(db *DB) *ContactStore { return &ContactStore{db: db} }

func (s *ContactStore) AddContact(ctx context.Context, owner, user uuid.UUID, alias string) (contact.Contact, *chatv1.UserEvent, error) {
	c := contact.Contact{UserID: user, Alias: alias}
	ev, err := s.change(ctx, owner, user, func(tx *Tx, now time.Time) (bool, error) {
		if err := requireUser(ctx, tx, user); err != nil {
			return false, err
		}
		// Returns a row only when it inserted or changed the alias.
		err := tx.QueryRowContext(ctx, `INSERT INTO contacts (owner_id, user_id, alias, create_time) VALUES ($1, $2, $3, $4)
			ON CONFLICT (owner_id, user_id) DO UPDATE SET alias = excluded.alias WHERE contacts.alias <> excluded.alias
			RETURNING create_time`, owner, user, alias, micros(now)).Scan(scanTime(&c.CreateTime))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := tx.QueryRowContext(ctx, `SELECT create_time FROM contacts WHERE owner_id = $1 AND user_id = $2`,
				owner, user).Scan(scanTime(&c.CreateTime)); err != nil {
				return false, fmt.Errorf("read contact: %w", err)
			}
			return false, nil
		case err != nil:
			return false, fmt.Errorf("upsert contact: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return contact.Contact{}, nil, err
	}
	return c, ev, nil
}

func (s *ContactStore) RemoveContact(ctx context.Context, owner, user uuid.UUID) (*chatv1.UserEvent, error) {
	return s.change(ctx, owner, user, func(tx *Tx, _ time.Time) (bool, error) {
		return deleted(ctx, tx, user, "delete contact", `DELETE FROM contacts WHERE owner_id = $1 AND user_id = $2`, owner, user)
	})
}

func (s *ContactStore) Block(ctx context.Context, b contact.Block) (*chatv1.UserEvent, error) {
	return s.change(ctx, b.Blocker, b.Blocked, func(tx *Tx, now time.Time) (bool, error) {
		if err := requireUser(ctx, tx, b.Blocked); err != nil {
			return false, err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO blocks (blocker_id, blocked_id, create_time) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, b.Blocker, b.Blocked, micros(now))
		if err != nil {
			return false, fmt.Errorf("insert block: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return false, fmt.Errorf("insert block: %w", err)
		}
		return n > 0, nil
	})
}

func (s *ContactStore) Unblock(ctx context.Context, b contact.Block) (*chatv1.UserEvent, error) {
	return s.change(ctx, b.Blocker, b.Blocked, func(tx *Tx, _ time.Time) (bool, error) {
		return deleted(ctx, tx, b.Blocked, "delete block", `DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2`,
			b.Blocker, b.Blocked)
	})
}

// deleted runs the DELETE q and reports whether it deleted a row; when it
// did not, contact.ErrNoUser unless other is a user.
func deleted(ctx context.Context, tx *Tx, other uuid.UUID, op, q string, args ...any) (bool, error) {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	if n == 0 {
		return false, requireUser(ctx, tx, other)
	}
	return true, nil
}

// change runs apply in a write transaction at its time. apply makes the
// change and reports whether anything changed; a real change is appended,
// as the relation now is, to the owner's user events. The other user is
// checked by apply, before it writes: SQLite's foreign key errors do not
// say which key failed.
func (s *ContactStore) change(ctx context.Context, owner, other uuid.UUID, apply func(tx *Tx, now time.Time) (bool, error)) (*chatv1.UserEvent, error) {
	var ev *chatv1.UserEvent
	err := s.db.Write(ctx, func(tx *Tx) error {
		exists, err := userExists(ctx, tx, owner)
		if err != nil {
			return err
		}
		if !exists {
			return contact.ErrNoAccount
		}
		now := txTime()
		changed, err := apply(tx, now)
		if err != nil || !changed {
			return err
		}
		r, err := readRelation(ctx, tx, owner, other)
		if err != nil {
			return err
		}
		ev, err = appendUserEvent(ctx, tx, now, owner, contact.ChangedEvent(other, r))
		return err
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
}

func readRelation(ctx context.Context, q querier, owner, other uuid.UUID) (contact.Relation, error) {
	var r contact.Relation
	var alias sql.NullString
	if err := q.QueryRowContext(ctx, `SELECT
		(SELECT alias FROM contacts WHERE owner_id = $1 AND user_id = $2),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`, owner, other).Scan(&alias, &r.Blocked); err != nil {
		return contact.Relation{}, fmt.Errorf("read relation: %w", err)
	}
	r.Contact, r.Alias = alias.Valid, alias.String
	return r, nil
}

func userExists(ctx context.Context, q querier, id uuid.UUID) (bool, error) {
	var exists bool
	if err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, id).Scan(&exists); err != nil {
		return false, fmt.Errorf("check user: %w", err)
	}
	return exists, nil
}

// requireUser is contact.ErrNoUser unless id is a user.
func requireUser(ctx context.Context, q querier, id uuid.UUID) error {
	exists, err := userExists(ctx, q, id)
	if err == nil && !exists {
		err = contact.ErrNoUser
	}
	return err
}

func (s *ContactStore) Contacts(ctx context.Context, owner, after uuid.UUID, limit int) ([]contact.Contact, error) {
	var contacts []contact.Contact
	err := s.db.Read(ctx, func(tx *sql.Tx) (err error) {
		contacts, err = queryAll(ctx, tx, func(r *sql.Rows) (contact.Contact, error) {
			var c contact.Contact
			return c, r.Scan(&c.UserID, &c.Alias, scanTime(&c.CreateTime))
		}, `SELECT user_id, alias, create_time FROM contacts
			WHERE owner_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3`, owner, after, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	return contacts, nil
}

func (s *ContactStore) BlockedUsers(ctx context.Context, blocker, after uuid.UUID, limit int) ([]contact.BlockedUser, error) {
	var blocked []contact.BlockedUser
	err := s.db.Read(ctx, func(tx *sql.Tx) (err error) {
		blocked, err = queryAll(ctx, tx, func(r *sql.Rows) (contact.BlockedUser, error) {
			var b contact.BlockedUser
			return b, r.Scan(&b.UserID, scanTime(&b.CreateTime))
		}, `SELECT blocked_id, create_time FROM blocks
			WHERE blocker_id = $1 AND blocked_id > $2 ORDER BY blocked_id LIMIT $3`, blocker, after, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list blocked users: %w", err)
	}
	return blocked, nil
}

func (s *ContactStore) Blocks(ctx context.Context, after contact.Block, limit int) ([]contact.Block, error) {
	var blocks []contact.Block
	err := s.db.Read(ctx, func(tx *sql.Tx) (err error) {
		blocks, err = queryAll(ctx, tx, func(r *sql.Rows) (contact.Block, error) {
			var b contact.Block
			return b, r.Scan(&b.Blocker, &b.Blocked)
		}, `SELECT blocker_id, blocked_id FROM blocks
			WHERE (blocker_id, blocked_id) > ($1, $2) ORDER BY blocker_id, blocked_id LIMIT $3`,
			after.Blocker, after.Blocked, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	return blocks, nil
}

// SyncBlock reads in a write transaction, not a read one: that holds the
// lock of blocker (of everyone) while apply runs.
func (s *ContactStore) SyncBlock(ctx context.Context, b contact.Block, apply func(blocked bool) error) error {
	return s.db.Write(ctx, func(tx *Tx) error {
		blocked, err := isBlockedBy(ctx, tx, b.Blocked, b.Blocker)
		if err != nil {
			return err
		}
		return apply(blocked)
	})
}

func (s *ContactStore) SyncBlocks(ctx context.Context, pairs []contact.Block, apply func(blocks, stale []contact.Block) error) error {
	return s.db.Write(ctx, func(tx *Tx) error {
		var blocks, stale []contact.Block
		// One query per pair: in process, SQLite answers each from the
		// primary key in microseconds.
		for _, p := range pairs {
			blocked, err := isBlockedBy(ctx, tx, p.Blocked, p.Blocker)
			if err != nil {
				return err
			}
			if blocked {
				blocks = append(blocks, p)
			} else {
				stale = append(stale, p)
			}
		}
		return apply(blocks, stale)
	})
}
