package auth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultAccessTTL is how long an access token lives when NewSigner is given
// no TTL. Short, because access tokens are verified locally and cannot be
// revoked: a logged-out device keeps access for at most this long.
const DefaultAccessTTL = 15 * time.Minute

// Token format: "v1.<payload>.<signature>", both parts unpadded base64url.
// The signature is Ed25519 over "v1.<payload>", so the version is signed too.
const (
	tokenVersion = "v1"
	// maxTokenLen bounds the work done on untrusted input; real tokens are
	// about 300 bytes.
	maxTokenLen = 1024
)

var (
	// ErrTokenExpired is returned by Verify for a correctly signed token past
	// its expiry.
	ErrTokenExpired = errors.New("access token expired")
	// ErrInvalidToken is returned by Verify for anything that is not a token
	// signed by one of the verifier's keys: garbage, tampered, wrong key.
	ErrInvalidToken = errors.New("invalid access token")
)

// b64 rejects non-zero trailing bits, so every token has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// claims is the signed payload.
type claims struct {
	KeyID    string `json:"kid"`
	UserID   string `json:"uid"`
	DeviceID string `json:"did"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
}

// Signer issues access tokens. Only nodes that log users in need it; every
// other node needs just the Verifier.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
	ttl   time.Duration
}

// NewSigner returns a Signer for the Ed25519 key derived from a 32-byte seed.
// A ttl of zero or less means DefaultAccessTTL.
func NewSigner(seed []byte, ttl time.Duration) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("auth: token signing seed must be %d bytes, got %d", ed25519.SeedSize, len(seed))
	}
	if ttl <= 0 {
		ttl = DefaultAccessTTL
	}
	key := ed25519.NewKeyFromSeed(seed)
	return &Signer{key: key, keyID: keyID(key.Public().(ed25519.PublicKey)), ttl: ttl}, nil
}

// PublicKey returns the key a Verifier needs to check this Signer's tokens.
func (s *Signer) PublicKey() ed25519.PublicKey {
	return s.key.Public().(ed25519.PublicKey)
}

// Verifier returns a Verifier for this Signer's tokens.
func (s *Signer) Verifier() *Verifier {
	v, _ := NewVerifier(s.PublicKey()) // cannot fail: the key is well formed
	return v
}

// Issue returns a token for id valid from now for the Signer's TTL, and its
// expiry.
func (s *Signer) Issue(id Identity, now time.Time) (string, time.Time, error) {
	if id.UserID == "" || id.DeviceID == "" {
		return "", time.Time{}, errors.New("auth: issue token: identity needs a user id and a device id")
	}
	// Whole seconds, so the returned expiry is exactly what Verify enforces.
	now = now.Truncate(time.Second)
	expire := now.Add(s.ttl)
	payload, err := json.Marshal(claims{
		KeyID:    s.keyID,
		UserID:   id.UserID,
		DeviceID: id.DeviceID,
		IssuedAt: now.Unix(),
		Expiry:   expire.Unix(),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: issue token: %w", err)
	}
	signed := tokenVersion + "." + b64.EncodeToString(payload)
	sig := ed25519.Sign(s.key, []byte(signed))
	return signed + "." + b64.EncodeToString(sig), expire, nil
}

// Verifier checks access tokens locally, with public keys only.
type Verifier struct {
	keys map[string]ed25519.PublicKey
}

// NewVerifier returns a Verifier accepting tokens signed by any of keys.
// Several keys let a signing key be rotated: verifiers learn the new public
// key before signers switch to it.
func NewVerifier(keys ...ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("auth: verifier needs at least one public key")
	}
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for i, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("auth: public key %d must be %d bytes, got %d", i, ed25519.PublicKeySize, len(k))
		}
		v.keys[keyID(k)] = k
	}
	return v, nil
}

// Verify returns the identity in token. Errors wrap ErrTokenExpired or
// decodePart decodes one part of a token, which must be in its canonical
// form: the decoder skips newlines, so an issued token with newlines added
// would verify too, and tokens are compared and logged as strings.
func decodePart(part string) ([]byte, error) {
	b, err := b64.DecodeString(part)
	if err != nil {
		return nil, err
	}
	if b64.EncodeToString(b) != part {
		return nil, errors.New("not in canonical base64url")
	}
	return b, nil
}

// ErrInvalidToken.
func (v *Verifier) Verify(token string) (Identity, error) {
	if len(token) > maxTokenLen {
		return Identity{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, maxTokenLen)
	}
	version, rest, _ := strings.Cut(token, ".")
	if version != tokenVersion {
		return Identity{}, fmt.Errorf("%w: not a %s token", ErrInvalidToken, tokenVersion)
	}
	payloadPart, sigPart, ok := strings.Cut(rest, ".")
	if !ok {
		return Identity{}, fmt.Errorf("%w: want 3 dot-separated parts", ErrInvalidToken)
	}
	payload, err := decodePart(payloadPart)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: payload: %v", ErrInvalidToken, err)
	}
	sig, err := decodePart(sigPart)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Identity{}, fmt.Errorf("%w: malformed signature", ErrInvalidToken)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Identity{}, fmt.Errorf("%w: payload: %v", ErrInvalidToken, err)
	}
	key, ok := v.keys[c.KeyID]
	if !ok {
		return Identity{}, fmt.Errorf("%w: unknown key id %q", ErrInvalidToken, c.KeyID)
	}
	signed := token[:len(tokenVersion)+1+len(payloadPart)]
	if !ed25519.Verify(key, []byte(signed), sig) {
		return Identity{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	if c.UserID == "" || c.DeviceID == "" {
		return Identity{}, fmt.Errorf("%w: no user or device id", ErrInvalidToken)
	}
	if !time.Now().Before(time.Unix(c.Expiry, 0)) {
		return Identity{}, ErrTokenExpired
	}
	return Identity{UserID: c.UserID, DeviceID: c.DeviceID}, nil
}

// keyID names a public key in tokens: the first 8 bytes of its SHA-256.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return b64.EncodeToString(sum[:8])
}
