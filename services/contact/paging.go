package contact

import (
	"encoding/base64"

	"github.com/google/uuid"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// pageSize returns the page size to use: the default for 0, at most
// maxPageSize.
func pageSize(requested int32) (int, error) {
	switch {
	case requested < 0:
		return 0, invalid("page_size must not be negative")
	case requested == 0:
		return defaultPageSize, nil
	case requested > maxPageSize:
		return maxPageSize, nil
	}
	return int(requested), nil
}

// Page tokens are the last user id of the previous page (lists are ordered
// by user id), tagged with the list they belong to so a token from one list
// is refused by the other. They stay valid across changes: a page starts
// after the last id seen, whatever was added or removed meanwhile.
const (
	contactsList byte = 'c'
	blockedList  byte = 'b'
)

func encodeToken(list byte, last uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{list}, last[:]...))
}

// decodeToken returns the id to start after; uuid.Nil (before every id) for
// no token.
func decodeToken(list byte, tok string) (uuid.UUID, error) {
	if tok == "" {
		return uuid.Nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != 17 || raw[0] != list {
		return uuid.Nil, invalid("malformed page_token")
	}
	id, err := uuid.FromBytes(raw[1:])
	if err != nil {
		return uuid.Nil, invalid("malformed page_token")
	}
	return id, nil
}
