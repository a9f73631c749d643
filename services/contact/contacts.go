package contact

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
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
	var c Contact
	_, _, err := s.change(ctx, "add contact", req.GetUserId(), func(uid, other uuid.UUID) (ev *chatv1.UserEvent, err error) {
		c, ev, err = s.store.AddContact(ctx, uid, other, alias)
		return ev, err
	})
	if err != nil {
		return nil, err
	}
	return &contactv1.AddContactResponse{Contact: contactProto(c)}, nil
}

func contactProto(c Contact) *contactv1.Contact {
	return &contactv1.Contact{UserId: c.UserID.String(), Alias: c.Alias, CreateTime: timestamppb.New(c.CreateTime)}
}

// RemoveContact removes user_id from the caller's contacts. Removing a user
// who is not a contact succeeds and changes nothing; a user_id that names
// no user is NotFound. A block stays.
func (s *Service) RemoveContact(ctx context.Context, req *contactv1.RemoveContactRequest) (*contactv1.RemoveContactResponse, error) {
	_, _, err := s.change(ctx, "remove contact", req.GetUserId(), func(uid, other uuid.UUID) (*chatv1.UserEvent, error) {
		return s.store.RemoveContact(ctx, uid, other)
	})
	if err != nil {
		return nil, err
	}
	return &contactv1.RemoveContactResponse{}, nil
}

// change makes one change of the caller's relation to the user userID with
// apply, a Store call that returns the event it appended (nil when nothing
// changed), and pushes that event to the caller's devices.
func (s *Service) change(ctx context.Context, op, userID string, apply func(uid, other uuid.UUID) (*chatv1.UserEvent, error)) (uid, other uuid.UUID, err error) {
	id, uid, err := auth.Caller(ctx)
	if err != nil {
		return uid, other, err
	}
	if other, err = target(uid, userID); err != nil {
		return uid, other, err
	}
	ev, err := apply(uid, other)
	switch {
	case errors.Is(err, ErrNoAccount):
		return uid, other, errNoAccount
	case errors.Is(err, ErrNoUser):
		return uid, other, userNotFound(other)
	case err != nil:
		return uid, other, s.internal(ctx, op, err)
	}
	s.pushed(ctx, id, ev)
	return uid, other, nil
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
	contacts, err := s.store.Contacts(ctx, uid, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list contacts", err)
	}
	res := &contactv1.ListContactsResponse{}
	for _, c := range contacts[:min(len(contacts), size)] {
		res.Contacts = append(res.Contacts, contactProto(c))
	}
	if len(contacts) > size {
		res.NextPageToken = encodeToken(contactsList, contacts[size-1].UserID)
	}
	return res, nil
}
