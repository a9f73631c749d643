package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// NewRefreshToken returns a random refresh token for the client and the hash
// to store. Only the hash is stored, so a database leak yields no usable
// tokens; 256 random bits need no salt or slow hash.
func NewRefreshToken() (token string, hash []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashRefreshToken(token)
}

// HashRefreshToken returns the stored form of a refresh token.
func HashRefreshToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
