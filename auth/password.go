package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id cost parameters.
type PasswordParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over the memory
	Threads uint8
}

// DefaultPasswordParams: 64 MiB, one pass, two lanes. This is above OWASP's
// argon2id baseline (m=46 MiB, t=1, p=1) and costs tens of milliseconds on a
// server core. Memory rather than passes carries the cost because memory is
// what makes GPU and ASIC guessing expensive; two lanes keep login latency
// down without letting one login occupy many cores. Passwords bounds how many
// hashes run at once, so a login flood costs a bounded amount of RAM.
var DefaultPasswordParams = PasswordParams{Memory: 64 * 1024, Time: 1, Threads: 2}

const (
	saltLen = 16
	hashLen = 32
)

// Passwords hashes and checks passwords with argon2id.
type Passwords struct {
	params PasswordParams
	// slots bounds concurrent hashes; each holds params.Memory KiB.
	slots chan struct{}
	dummy func() (string, error)
}

// DefaultConcurrentHashes is how many hashes NewPasswords runs at once when
// given no bound: with DefaultPasswordParams, 128 MiB of argon2id memory
// however many cores the machine has (one slot per core let a 64-core
// server take 4 GiB to a burst of logins). The Go heap grows to about twice
// what is live before it collects, so a burst costs about twice that in
// RSS (60 parallel registrations peaked near 450 MB with 2 slots, 670 MB
// with 4).
const DefaultConcurrentHashes = 2

// NewPasswords returns a Passwords hashing with params and running at most
// maxConcurrent hashes at once (zero or less: DefaultConcurrentHashes).
// Further callers wait for a slot as long as their context allows.
func NewPasswords(params PasswordParams, maxConcurrent int) *Passwords {
	if maxConcurrent <= 0 {
		maxConcurrent = DefaultConcurrentHashes
	}
	p := &Passwords{params: params, slots: make(chan struct{}, maxConcurrent)}
	p.dummy = sync.OnceValues(func() (string, error) {
		return p.Hash(context.Background(), "waggle-dummy-password")
	})
	return p
}

// Hash returns password hashed with a fresh random salt, in the PHC string
// format: $argon2id$v=19$m=65536,t=1,p=2$<salt>$<hash>.
func (p *Passwords) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	sum, err := p.derive(ctx, password, salt, p.params, hashLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.params.Memory, p.params.Time, p.params.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}

// Check reports whether password matches encoded, a string from Hash. The
// parameters come from encoded, so hashes made with older parameters still
// verify.
func (p *Passwords) Check(ctx context.Context, encoded, password string) (bool, error) {
	params, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	got, err := p.derive(ctx, password, salt, params, uint32(len(want)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// CheckUnknown spends the time of a Check and always fails. Logins for
// unknown users call it so that timing does not reveal which usernames exist.
func (p *Passwords) CheckUnknown(ctx context.Context, password string) error {
	encoded, err := p.dummy()
	if err != nil {
		return err
	}
	_, err = p.Check(ctx, encoded, password)
	return err
}

func (p *Passwords) derive(ctx context.Context, password string, salt []byte, params PasswordParams, keyLen uint32) ([]byte, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("auth: waiting to hash password: %w", ctx.Err())
	}
	defer func() { <-p.slots }()
	return argon2.IDKey([]byte(password), salt, params.Time, params.Memory, params.Threads, keyLen), nil
}

// parsePHC splits a string from Hash. Its errors never include the hash.
func parsePHC(encoded string) (PasswordParams, []byte, []byte, error) {
	bad := func(what string) (PasswordParams, []byte, []byte, error) {
		return PasswordParams{}, nil, nil, fmt.Errorf("auth: malformed password hash: %s", what)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return bad("unsupported argon2 version")
	}
	var params PasswordParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &params.Memory, &params.Time, &params.Threads); err != nil {
		return bad("parameters")
	}
	if params.Time < 1 || params.Threads < 1 || params.Memory < 8*uint32(params.Threads) {
		return bad("parameters out of range")
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return bad("salt")
	}
	sum, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(sum) < 16 {
		return bad("hash")
	}
	return params, salt, sum, nil
}
