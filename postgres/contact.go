package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/services/contact"
)

// ContactStore is contact.Store over the contacts and blocks tables. The
// owner's lock is its users row, locked FOR NO KEY UPDATE: that does not
// conflict with the KEY SHARE locks of foreign key checks, so others can
// still add the owner as a contact meanwhile.
type ContactStore struct{ pool *pgxpool.Pool }

var _ contact.Store = (*ContactStore)(nil)

// NewContactStore returns the contact store on pool.
func NewContactStore(pool *pgxpool.Pool) *ContactStore { return &ContactStore{pool: pool} }

func (s *ContactStore) AddContact(ctx context.Context, owner, user uuid.UUID, alias string) (contact.Contact, *chatv1.UserEvent, error) {
	c := contact.Contact{UserID: user, Alias: alias}
	ev, err := s.change(ctx, owner, user, func(tx pgx.Tx) (bool, error) {
		// Returns a row only when it inserted or changed the alias.
		err := tx.QueryRow(ctx, `INSERT INTO contacts (owner_id, user_id, alias) VALUES ($1, $2, $3)
			ON CONFLICT (owner_id, user_id) DO UPDATE SET alias = EXCLUDED.alias WHERE contacts.alias <> EXCLUDED.alias
			RETURNING create_time`, owner, user, alias).Scan(&c.CreateTime)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if err := tx.QueryRow(ctx, `SELECT create_time FROM contacts WHERE owner_id = $1 AND user_id = $2`,
				owner, user).Scan(&c.CreateTime); err != nil {
				return false, fmt.Errorf("read contact: %w", err)
			}
			return false, nil
		case foreignKey(err, "contacts_user_fk"):
			return false, contact.ErrNoUser
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
	return s.change(ctx, owner, user, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM contacts WHERE owner_id = $1 AND user_id = $2`, owner, user)
		if err != nil {
			return false, fmt.Errorf("delete contact: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return false, requireUser(ctx, tx, user)
		}
		return true, nil
	})
}

func (s *ContactStore) Block(ctx context.Context, b contact.Block) (*chatv1.UserEvent, error) {
	return s.change(ctx, b.Blocker, b.Blocked, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			b.Blocker, b.Blocked)
		switch {
		case foreignKey(err, "blocks_blocked_fk"):
			return false, contact.ErrNoUser
		case err != nil:
			return false, fmt.Errorf("insert block: %w", err)
		}
		return tag.RowsAffected() > 0, nil
	})
}

func (s *ContactStore) Unblock(ctx context.Context, b contact.Block) (*chatv1.UserEvent, error) {
	return s.change(ctx, b.Blocker, b.Blocked, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2`, b.Blocker, b.Blocked)
		if err != nil {
			return false, fmt.Errorf("delete block: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return false, requireUser(ctx, tx, b.Blocked)
		}
		return true, nil
	})
}

// change runs apply in a transaction under the owner's lock. apply makes
// the change and reports whether anything changed; a real change is
// appended, as the relation now is, to the owner's user events.
func (s *ContactStore) change(ctx context.Context, owner, other uuid.UUID, apply func(tx pgx.Tx) (bool, error)) (*chatv1.UserEvent, error) {
	var ev *chatv1.UserEvent
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockOwner(ctx, tx, owner); err != nil {
			return err
		}
		changed, err := apply(tx)
		if err != nil || !changed {
			return err
		}
		r, err := readRelation(ctx, tx, owner, other)
		if err != nil {
			return err
		}
		ev, err = appendUserEvent(ctx, tx, owner, contact.ChangedEvent(other, r))
		return err
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// lockOwner takes the owner's row lock for the rest of tx:
// contact.ErrNoAccount if there is no such user.
func lockOwner(ctx context.Context, tx pgx.Tx, owner uuid.UUID) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, owner).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return contact.ErrNoAccount
	}
	if err != nil {
		return fmt.Errorf("lock owner: %w", err)
	}
	return nil
}

// lockOwners takes the row locks of lockOwner for several users, in id
// order so that concurrent callers cannot deadlock. Users that are gone
// are skipped: they have no blocks left.
func lockOwners(ctx context.Context, tx pgx.Tx, ids []uuid.UUID) error {
	if _, err := tx.Exec(ctx, `SELECT FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, ids); err != nil {
		return fmt.Errorf("lock owners: %w", err)
	}
	return nil
}

func readRelation(ctx context.Context, tx pgx.Tx, owner, other uuid.UUID) (contact.Relation, error) {
	var r contact.Relation
	var alias *string
	if err := tx.QueryRow(ctx, `SELECT
		(SELECT alias FROM contacts WHERE owner_id = $1 AND user_id = $2),
		EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2)`, owner, other).Scan(&alias, &r.Blocked); err != nil {
		return contact.Relation{}, fmt.Errorf("read relation: %w", err)
	}
	if alias != nil {
		r.Contact, r.Alias = true, *alias
	}
	return r, nil
}

// requireUser is contact.ErrNoUser unless id is a user.
func requireUser(ctx context.Context, q querier, id uuid.UUID) error {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, id).Scan(&exists); err != nil {
		return fmt.Errorf("check user: %w", err)
	}
	if !exists {
		return contact.ErrNoUser
	}
	return nil
}

// foreignKey reports whether err violates the named foreign key.
func foreignKey(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503" && pe.ConstraintName == constraint
}

func (s *ContactStore) Contacts(ctx context.Context, owner, after uuid.UUID, limit int) ([]contact.Contact, error) {
	rows, err := s.pool.Query(ctx, `SELECT user_id, alias, create_time FROM contacts
		WHERE owner_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3`, owner, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	contacts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (contact.Contact, error) {
		var c contact.Contact
		return c, r.Scan(&c.UserID, &c.Alias, &c.CreateTime)
	})
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	return contacts, nil
}

func (s *ContactStore) BlockedUsers(ctx context.Context, blocker, after uuid.UUID, limit int) ([]contact.BlockedUser, error) {
	rows, err := s.pool.Query(ctx, `SELECT blocked_id, create_time FROM blocks
		WHERE blocker_id = $1 AND blocked_id > $2 ORDER BY blocked_id LIMIT $3`, blocker, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list blocked users: %w", err)
	}
	blocked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (contact.BlockedUser, error) {
		var b contact.BlockedUser
		return b, r.Scan(&b.UserID, &b.CreateTime)
	})
	if err != nil {
		return nil, fmt.Errorf("list blocked users: %w", err)
	}
	return blocked, nil
}

func (s *ContactStore) Blocks(ctx context.Context, after contact.Block, limit int) ([]contact.Block, error) {
	rows, err := s.pool.Query(ctx, `SELECT blocker_id, blocked_id FROM blocks
		WHERE (blocker_id, blocked_id) > ($1, $2) ORDER BY blocker_id, blocked_id LIMIT $3`,
		after.Blocker, after.Blocked, limit)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	blocks, err := pgx.CollectRows(rows, scanBlock)
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	return blocks, nil
}

func scanBlock(r pgx.CollectableRow) (contact.Block, error) {
	var b contact.Block
	err := r.Scan(&b.Blocker, &b.Blocked)
	return b, err
}

func (s *ContactStore) SyncBlock(ctx context.Context, b contact.Block, apply func(blocked bool) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Lock, then read in a second statement: in READ COMMITTED a
		// statement reads with the snapshot it started with, even after
		// waiting for a lock, so reading in the locking statement could
		// miss the change that held the lock.
		err := lockOwner(ctx, tx, b.Blocker)
		if err != nil && !errors.Is(err, contact.ErrNoAccount) { // gone: its blocks went with it
			return err
		}
		blocked, err := isBlockedBy(ctx, tx, b.Blocked, b.Blocker)
		if err != nil {
			return err
		}
		return apply(blocked)
	})
}

func (s *ContactStore) SyncBlocks(ctx context.Context, pairs []contact.Block, apply func(blocks, stale []contact.Block) error) error {
	blockers := make([]uuid.UUID, len(pairs))
	blocked := make([]uuid.UUID, len(pairs))
	for i, p := range pairs {
		blockers[i], blocked[i] = p.Blocker, p.Blocked
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockOwners(ctx, tx, blockers); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT p.b, p.x, EXISTS (SELECT 1 FROM blocks WHERE blocker_id = p.b AND blocked_id = p.x)
			FROM unnest($1::uuid[], $2::uuid[]) AS p (b, x)`, blockers, blocked)
		if err != nil {
			return fmt.Errorf("check blocks: %w", err)
		}
		var blocks, stale []contact.Block
		var b contact.Block
		var isBlock bool
		if _, err := pgx.ForEachRow(rows, []any{&b.Blocker, &b.Blocked, &isBlock}, func() error {
			if isBlock {
				blocks = append(blocks, b)
			} else {
				stale = append(stale, b)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("check blocks: %w", err)
		}
		return apply(blocks, stale)
	})
}
