package account

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/wagglechat/waggle/internal/safetext"
)

const (
	minUsernameLen = 3
	maxUsernameLen = 32
	minPasswordLen = 8
	// maxPasswordLen bounds the bytes fed to argon2.
	maxPasswordLen = 256
	maxLabelLen    = 64
	maxBatchUsers  = 500
)

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// normalizeUsername case-folds ASCII only: Unicode folding would map the
// Kelvin sign to "k" and let look-alike names collide.
func normalizeUsername(s string) (string, error) {
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return "", invalid("username may contain only letters a-z, digits and _ . -, got %q", c)
		}
	}
	// ASCII only from here, so bytes are characters.
	if n := len(s); n < minUsernameLen || n > maxUsernameLen {
		return "", invalid("username must be %d to %d characters, got %d", minUsernameLen, maxUsernameLen, n)
	}
	return strings.ToLower(s), nil
}

func validatePassword(p string) error {
	if n := len(p); n < minPasswordLen || n > maxPasswordLen {
		return invalid("password must be %d to %d bytes, got %d", minPasswordLen, maxPasswordLen, n)
	}
	return nil
}

// validateLabel checks a display or device name: short, UTF-8, and free of
// control characters that would break other users' screens and logs.
func validateLabel(field, s string) error {
	if err := safetext.Check(field, s, false); err != nil {
		return invalid("%v", err)
	}
	if n := utf8.RuneCountInString(s); n > maxLabelLen {
		return invalid("%s must be at most %d characters, got %d", field, maxLabelLen, n)
	}
	return nil
}

func parseUserID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.UUID{}, invalid("user id %q is not a UUID", s)
	}
	return id, nil
}
