package auth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var alice = Identity{UserID: "6f1c6a4e-8d51-4a8e-9a0b-3f8f1c2d9e10", DeviceID: "0b7e3c1a-2f4d-4e6b-8a9c-1d2e3f4a5b6c"}

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, ed25519.SeedSize) }

func newSigner(t testing.TB, b byte) *Signer {
	t.Helper()
	s, err := NewSigner(seed(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func issue(t testing.TB, s *Signer, id Identity, now time.Time) string {
	t.Helper()
	tok, _, err := s.Issue(id, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// flip changes one character of s at i to another valid base64url character.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func TestVerify(t *testing.T) {
	signer := newSigner(t, 1)
	other := newSigner(t, 2)
	now := time.Now()
	valid := issue(t, signer, alice, now)
	parts := strings.Split(valid, ".")

	forged := func(payload string) string {
		// Correct signature with the right key over a payload the signer never
		// issued, to show the claims are checked after the signature.
		signed := "v1." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(ed25519.NewKeyFromSeed(seed(1)), []byte(signed)))
	}

	tests := []struct {
		name    string
		token   string
		want    Identity
		wantErr error
	}{
		{"valid", valid, alice, nil},
		{"expired", issue(t, signer, alice, now.Add(-DefaultAccessTTL-time.Second)), Identity{}, ErrTokenExpired},
		{"tampered payload", parts[0] + "." + flip(parts[1], 10) + "." + parts[2], Identity{}, ErrInvalidToken},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2], 5), Identity{}, ErrInvalidToken},
		{"payload swapped from another key", parts[0] + "." + strings.Split(issue(t, other, alice, now), ".")[1] + "." + parts[2], Identity{}, ErrInvalidToken},
		{"wrong key", issue(t, other, alice, now), Identity{}, ErrInvalidToken},
		{"wrong version", "v2." + parts[1] + "." + parts[2], Identity{}, ErrInvalidToken},
		{"missing signature", parts[0] + "." + parts[1], Identity{}, ErrInvalidToken},
		{"extra part", valid + ".x", Identity{}, ErrInvalidToken},
		{"padded base64", parts[0] + "." + parts[1] + "." + parts[2] + "==", Identity{}, ErrInvalidToken},
		{"too long", valid + strings.Repeat("A", maxTokenLen), Identity{}, ErrInvalidToken},
		{"garbage", "not a token", Identity{}, ErrInvalidToken},
		{"empty", "", Identity{}, ErrInvalidToken},
		{"signed but no device", forged(`{"kid":"` + signer.keyID + `","uid":"u","exp":9999999999}`), Identity{}, ErrInvalidToken},
		{"signed but not json", forged(`{`), Identity{}, ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signer.Verifier().Verify(tt.token)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Verify() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	signer, err := NewSigner(seed(1), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	_, expire, err := signer.Issue(alice, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2030, 1, 2, 3, 5, 5, 0, time.UTC); !expire.Equal(want) {
		t.Errorf("expire = %v, want %v", expire, want)
	}
	for _, id := range []Identity{{}, {UserID: "u"}, {DeviceID: "d"}} {
		if _, _, err := signer.Issue(id, now); err == nil {
			t.Errorf("Issue(%+v) succeeded, want error", id)
		}
	}
	if _, err := NewSigner(make([]byte, 31), 0); err == nil {
		t.Error("NewSigner accepted a 31-byte seed")
	}
}

func TestVerifierKeyRotation(t *testing.T) {
	old, next := newSigner(t, 1), newSigner(t, 2)
	v, err := NewVerifier(old.PublicKey(), next.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Signer{old, next} {
		if _, err := v.Verify(issue(t, s, alice, time.Now())); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if _, err := NewVerifier(); err == nil {
		t.Error("NewVerifier() with no keys succeeded")
	}
	if _, err := NewVerifier(make(ed25519.PublicKey, 5)); err == nil {
		t.Error("NewVerifier accepted a 5-byte key")
	}
}

// FuzzVerify checks that Verify never panics and accepts nothing but tokens
// the signer issued: Ed25519 signatures are not malleable and the base64 is
// strict, so each token has exactly one accepted spelling. The tokens are
// issued at fixed instants: every fuzz worker rebuilds issued, and one built
// from its own clock would call another worker's valid seeds forgeries.
func FuzzVerify(f *testing.F) {
	signer := newSigner(f, 1)
	valid := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) // unexpired for decades
	issued := map[string]bool{}
	for _, id := range []Identity{alice, {UserID: "u", DeviceID: "d"}} {
		tok := issue(f, signer, id, valid)
		issued[tok] = true
		f.Add(tok)
	}
	f.Add(issue(f, newSigner(f, 2), alice, valid))
	f.Add(issue(f, signer, alice, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))) // expired
	f.Add("")
	f.Add("v1..")
	f.Add("v1.e30.")
	f.Add("v1." + base64.RawURLEncoding.EncodeToString([]byte(`{"kid":"`+signer.keyID+`","uid":"u","did":"d","exp":99999999999}`)) + "." + strings.Repeat("A", 86))
	v := signer.Verifier()
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrTokenExpired) {
				t.Fatalf("Verify(%q) error %v wraps neither sentinel", token, err)
			}
			return
		}
		if !issued[token] {
			t.Fatalf("Verify accepted a token the signer never issued: %q -> %+v", token, id)
		}
	})
}
