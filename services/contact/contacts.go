package contact

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	contactv1 "github.com/wagglechat/waggle/gen/go/waggle/contact/v1"
)

// MaxAliasChars bounds a contact's alias, in characters.
const MaxAliasChars = 64

// validAlias accepts the empty alias (use the profile's name) or up to MaxAliasChars
// characters of printable UTF-8 without surrounding white space.
func validAlias(a string) error {
	if !utf8.ValidString(a) {
		return invalid("alias must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(a); n > MaxAliasChars {
		return invalid("alias has %d characters, at most %d are allowed", n, MaxAliasChars)
	}
	if strings.TrimSpace(a) != a {
		return invalid("alias must not start or end with white space")
	}
	if strings.IndexFunc(a, unicode.IsControl) >= 0 {
		return invalid("alias must not contain control characters")
	}
	return nil
}

// AddContact adds user_id to the caller's contacts with alias, or, if it is
// a contact already, sets its alias. Adding it again with the same alias
// changes nothing. The user is not told. A blocked user can be a contact:
// the block stays.
func (s *Service) AddContact(ctx context.Context, req *contactv1.AddContactRequest) (*contactv1.AddContactResponse, error) {
	id, uid, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	other, err := target(uid, req.GetUserId())
	if err != nil {
		return nil, err
	}
	alias := req.GetAlias()
	if err := validAlias(alias); err != nil {
		return nil, err
	}
	var created time.Time
	var ev *chatv1.UserEvent
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := lockOwner(ctx, tx, uid); err != nil {
			return err
		}
		// Returns a row only when it inserted or changed the alias.
		err := tx.QueryRow(ctx, `INSERT INTO contacts (owner_id, user_id, alias) VALUES ($1, $2, $3)
			ON CONFLICT (owner_id, user_id) DO UPDATE SET alias = EXCLUDED.alias WHERE contacts.alias <> EXCLUDED.alias
			RETURNING create_time`, uid, other, alias).Scan(&created)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if err := tx.QueryRow(ctx, `SELECT create_time FROM contacts WHERE owner_id = $1 AND user_id = $2`,
				uid, other).Scan(&created); err != nil {
				return fmt.Errorf("read contact: %w", err)
			}
			return nil
		case foreignKey(err, "contacts_user_fk"):
			return userNotFound(other)
		case err != nil:
			return fmt.Errorf("upsert contact: %w", err)
		}
		ev, err = appendChange(ctx, tx, uid, other)
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "add contact", err)
	}
	s.pushed(id, ev)
	return &contactv1.AddContactResponse{Contact: &contactv1.Contact{
		UserId: other.String(), Alias: alias, CreateTime: timestamppb.New(created),
	}}, nil
}

// RemoveContact removes user_id from the caller's contacts. Removing a user
// who is not a contact succeeds and changes nothing; a user_id that names
// no user is NotFound. A block stays.
func (s *Service) RemoveContact(ctx context.Context, req *contactv1.RemoveContactRequest) (*contactv1.RemoveContactResponse, error) {
	id, uid, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	other, err := target(uid, req.GetUserId())
	if err != nil {
		return nil, err
	}
	var ev *chatv1.UserEvent
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := lockOwner(ctx, tx, uid); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM contacts WHERE owner_id = $1 AND user_id = $2`, uid, other)
		if err != nil {
			return fmt.Errorf("delete contact: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return requireUser(ctx, tx, other)
		}
		ev, err = appendChange(ctx, tx, uid, other)
		return err
	})
	if err != nil {
		return nil, s.internal(ctx, "remove contact", err)
	}
	s.pushed(id, ev)
	return &contactv1.RemoveContactResponse{}, nil
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
	_, uid, err := caller(ctx)
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
