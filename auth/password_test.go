package auth

import (
	"context"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// cheap keeps tests fast; production uses DefaultPasswordParams.
var cheap = PasswordParams{Memory: 64, Time: 1, Threads: 1}

func TestPasswords(t *testing.T) {
	ctx := context.Background()
	p := NewPasswords(cheap, 0)
	h1, err := p.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := p.Hash(ctx, "correct horse")
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !phc.MatchString(h1) {
		t.Fatalf("hash %q is not a PHC argon2id string", h1)
	}
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	older, _ := NewPasswords(PasswordParams{Memory: 128, Time: 2, Threads: 2}, 0).Hash(ctx, "correct horse")

	tests := []struct {
		name     string
		encoded  string
		password string
		want     bool
		wantErr  bool
	}{
		{"match", h1, "correct horse", true, false},
		{"other salt matches", h2, "correct horse", true, false},
		{"older parameters match", older, "correct horse", true, false},
		{"wrong password", h1, "correct horsE", false, false},
		{"empty password", h1, "", false, false},
		{"not phc", "plaintext", "correct horse", false, true},
		{"argon2i", strings.Replace(h1, "argon2id", "argon2i", 1), "correct horse", false, true},
		{"version 16", strings.Replace(h1, "v=19", "v=16", 1), "correct horse", false, true},
		{"zero time", strings.Replace(h1, "t=1", "t=0", 1), "correct horse", false, true},
		{"bad salt", withPart(h1, 4, "!!"), "correct horse", false, true},
		{"short hash", withPart(h1, 5, "AAAA"), "correct horse", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Check(ctx, tt.encoded, tt.password)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Check() = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tt.encoded) {
				t.Fatalf("error %q reveals the hash", err)
			}
		})
	}
	if err := p.CheckUnknown(ctx, "correct horse"); err != nil {
		t.Fatalf("CheckUnknown: %v", err)
	}
}

// withPart replaces the i-th "$"-separated part of a PHC string.
func withPart(phc string, i int, part string) string {
	parts := strings.Split(phc, "$")
	parts[i] = part
	return strings.Join(parts, "$")
}

func TestDefaultPasswordParams(t *testing.T) {
	ctx := context.Background()
	p := NewPasswords(DefaultPasswordParams, 0)
	h, err := p.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=1,p=2$") {
		t.Fatalf("hash %q does not use the default parameters", h)
	}
	if ok, err := p.Check(ctx, h, "correct horse"); !ok || err != nil {
		t.Fatalf("Check() = %v, %v", ok, err)
	}
}

func TestPasswordsWaitIsCancellable(t *testing.T) {
	p := NewPasswords(cheap, 1)
	p.slots <- struct{}{} // occupy the only slot
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Hash(ctx, "password"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hash with a full pool and a cancelled context: %v, want context.Canceled", err)
	}
}

// The bound on concurrent hashes is their memory, so it must not grow with
// the core count.
func TestConcurrentHashesAreAFixedNumber(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(64))
	tests := []struct{ maxConcurrent, want int }{
		{0, 2},
		{-1, 2},
		{2, 2},
		{100, 100},
	}
	for _, tt := range tests {
		if got := cap(NewPasswords(cheap, tt.maxConcurrent).slots); got != tt.want {
			t.Errorf("NewPasswords(_, %d) runs %d hashes at once with 64 cores, want %d", tt.maxConcurrent, got, tt.want)
		}
	}
}

func TestRefreshToken(t *testing.T) {
	tok, hash := NewRefreshToken()
	tok2, _ := NewRefreshToken()
	if len(tok) != 43 || tok == tok2 {
		t.Fatalf("tokens %q, %q: want distinct 43-character base64url strings", tok, tok2)
	}
	if string(HashRefreshToken(tok)) != string(hash) || len(hash) != 32 {
		t.Fatal("HashRefreshToken does not reproduce the stored hash")
	}
}
