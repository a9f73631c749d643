package contact

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	contactv1 "github.com/wagglechat/waggle/gen/go/waggle/contact/v1"
	"github.com/wagglechat/waggle/internal/safetext"
)

// MaxAliasChars bounds a contact's alias, in characters.
const MaxAliasChars = 64

// validAlias accepts the empty alias (use the profile's name) or up to MaxAliasChars
// characters of printable UTF-8 without surrounding white space.
func validAlias(a string) error {
	if err := safetext.Check("alias", a, false); err != nil {
		return invalid("%v", err)
	}
	if n := utf8.RuneCountInString(a); n > MaxAliasChars {
		return invalid("alias has %d characters, at most %d are allowed", n, MaxAliasChars)
	}
	if strings.TrimSpace(a) != a {
		return invalid("alias must not start or end with white space")
	}
	return nil
}

// AddContact adds user_id to the caller's contacts with alias, or, if it is
// a contact already, sets its alias. Adding it again with the same alias
// changes nothing. The user is not told. A blocked user can be a contact:
// the block stays.
func (s *Service) AddContact(ctx context.Context, req *contactv1.AddContactRequest) (*contactv1.AddContactResponse, error) {
	alias := req.GetAlias()
	if err := validAlias(alias); err != nil {
		return nil, err
	}
	var created time.Time
	_, other, err := s.change(ctx, "add contact", req.GetUserId(), func(tx pgx.Tx, uid, other uuid.UUID) (bool, error) {
		// Returns a row only when it inserted or changed the alias.
		err := tx.QueryRow(ctx, `INSERT INTO contacts (owner_id, user_id, alias) VALUES ($1, $2, $3)
			ON CONFLICT (owner_id, user_id) DO UPDATE SET alias = EXCLUDED.alias WHERE contacts.alias <> EXCLUDED.alias
			RETURNING create_time`, uid, other, alias).Scan(&created)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if err := tx.QueryRow(ctx, `SELECT create_time FROM contacts WHERE owner_id = $1 AND user_id = $2`,
				uid, other).Scan(&created); err != nil {
				return false, fmt.Errorf("read contact: %w", err)
			}
			return false, nil
		case foreignKey(err, "contacts_user_fk"):
			return false, userNotFound(other)
		case err != nil:
			return false, fmt.Errorf("upsert contact: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &contactv1.AddContactResponse{Contact: &contactv1.Contact{
		UserId: other.String(), Alias: alias, CreateTime: timestamppb.New(created),
	}}, nil
}

// RemoveContact removes user_id from the caller's contacts. Removing a user
// who is not a contact succeeds and changes nothing; a user_id that names
// no user is NotFound. A block stays.
func (s *Service) RemoveContact(ctx context.Context, req *contactv1.RemoveContactRequest) (*contactv1.RemoveContactResponse, error) {
	_, _, err := s.change(ctx, "remove contact", req.GetUserId(), func(tx pgx.Tx, uid, other uuid.UUID) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM contacts WHERE owner_id = $1 AND user_id = $2`, uid, other)
		if err != nil {
			return false, fmt.Errorf("delete contact: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return false, requireUser(ctx, tx, other)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &contactv1.RemoveContactResponse{}, nil
}

// change runs one change of the caller's relation to the user userID in a
// transaction under the caller's lock. apply makes it and reports whether
// anything changed; a real change is appended to the caller's own event
// stream and pushed to the caller's devices after the commit.
func (s *Service) change(ctx context.Context, op, userID string, apply func(tx pgx.Tx, uid, other uuid.UUID) (bool, error)) (uid, other uuid.UUID, err error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return uid, other, err
	}
	if other, err = target(uid, userID); err != nil {
		return uid, other, err
	}
	var ev *chatv1.UserEvent
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := lockOwner(ctx, tx, uid); err != nil {
			return err
		}
		changed, err := apply(tx, uid, other)
		if err != nil || !changed {
			return err
		}
		ev, err = appendChange(ctx, tx, uid, other)
		return err
	})
	if err != nil {
		return uid, other, s.internal(ctx, op, err)
	}
	s.pushed(ctx, id, ev)
	return uid, other, nil
}

// requireUser fails with NotFound unless id is a user.
func requireUser(ctx context.Context, q Querier, id uuid.UUID) error {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, id).Scan(&exists); err != nil {
		return fmt.Errorf("check user: %w", err)
	}
	if !exists {
		return userNotFound(id)
	}
	return nil
}

// ListContacts pages through the caller's contacts in user id order
// (page_size default 100, at most 1000).
func (s *Service) ListContacts(ctx context.Context, req *contactv1.ListContactsRequest) (*contactv1.ListContactsResponse, error) {
	_, uid, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeToken(contactsList, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT user_id, alias, create_time FROM contacts
		WHERE owner_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3`, uid, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list contacts", err)
	}
	contacts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*contactv1.Contact, error) {
		var user uuid.UUID
		var alias string
		var created time.Time
		if err := r.Scan(&user, &alias, &created); err != nil {
			return nil, err
		}
		return &contactv1.Contact{UserId: user.String(), Alias: alias, CreateTime: timestamppb.New(created)}, nil
	})
	if err != nil {
		return nil, s.internal(ctx, "list contacts", err)
	}
	res := &contactv1.ListContactsResponse{Contacts: contacts}
	if len(contacts) > size {
		res.Contacts = contacts[:size]
		res.NextPageToken = encodeToken(contactsList, uuid.MustParse(contacts[size-1].GetUserId()))
	}
	return res, nil
}
