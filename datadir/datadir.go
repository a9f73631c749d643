// Package datadir provides the data directory of an embedded Waggle: a
// directory only one process may use at a time, holding the secrets that
// must outlive a restart (the token signing key, so issued tokens stay
// valid, and the internal secret).
//
// Files inside:
//
//	lock             held with flock(2) while the directory is open; holds the owner's pid
//	token-key        the Ed25519 seed tokens are signed with, base64 (the format of --token-key)
//	internal-secret  the secret services authenticate each other with (as --internal-secret)
//
// A secret is written once, to a temporary file renamed into place, so a
// crash leaves either no file (a new secret is made at the next start) or
// the whole one. A secret file that exists but does not parse is an
// error, never replaced: a new token key would end every session.
package datadir

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	lockFile           = "lock"
	tokenKeyFile       = "token-key"
	internalSecretFile = "internal-secret"
	tempPrefix         = ".tmp-"
)

// minSecret is the shortest internal secret accepted, as for
// --internal-secret.
const minSecret = 16

// Dir is an open data directory, locked against other processes (and
// other Opens in this one) until Close.
type Dir struct {
	path           string
	lock           *os.File
	tokenSeed      []byte
	internalSecret string
}

// Open creates the directory (0700) if it does not exist, locks it, and
// loads its secrets, creating those that do not exist yet.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s cannot be created: %w", path, err)
	}
	lock, err := os.OpenFile(filepath.Join(path, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("data directory %s is not writable: %w", path, err)
		}
		return nil, fmt.Errorf("data directory %s: %w", path, err)
	}
	if err := lockFD(lock); err != nil {
		defer lock.Close()
		if errors.Is(err, errLocked) {
			by := "another waggle process"
			if owner, _ := os.ReadFile(lock.Name()); len(owner) > 0 {
				by += " (pid " + strings.TrimSpace(string(owner)) + ")"
			}
			return nil, fmt.Errorf("data directory %s is in use by %s: stop it or choose another --data-dir", path, by)
		}
		return nil, fmt.Errorf("data directory %s: lock: %w", path, err)
	}
	d := &Dir{path: path, lock: lock}
	if err := d.load(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dir) load() error {
	// The pid is for the message a second process gets; the lock is the flock.
	if err := d.lock.Truncate(0); err != nil {
		return d.writeErr(err)
	}
	if _, err := d.lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return d.writeErr(err)
	}
	// Temporary files left by a crash mid-write: nobody else can be
	// writing them, the directory is locked.
	stale, _ := filepath.Glob(filepath.Join(d.path, tempPrefix+"*"))
	for _, f := range stale {
		_ = os.Remove(f)
	}

	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	tokenKey, err := d.loadOrCreate(tokenKeyFile, base64.StdEncoding.EncodeToString(seed), func(s string) error {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("not base64: %w", err)
		}
		if len(b) != ed25519.SeedSize {
			return fmt.Errorf("%d bytes, want %d", len(b), ed25519.SeedSize)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.tokenSeed, _ = base64.StdEncoding.DecodeString(tokenKey)

	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	d.internalSecret, err = d.loadOrCreate(internalSecretFile, hex.EncodeToString(secret), func(s string) error {
		if len(s) < minSecret {
			return fmt.Errorf("%d characters, want at least %d", len(s), minSecret)
		}
		return nil
	})
	return err
}

// loadOrCreate returns the content of file name, checked by valid, or
// writes fresh to it if there is none.
func (d *Dir) loadOrCreate(name, fresh string, valid func(string) error) (string, error) {
	path := filepath.Join(d.path, name)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		s := strings.TrimSpace(string(b))
		if err := valid(s); err != nil {
			return "", fmt.Errorf("data directory: %s is corrupt (%v): restore it from a backup, or delete it to have a new one made (a new token key ends every session)", path, err)
		}
		return s, nil
	case errors.Is(err, fs.ErrNotExist):
		if err := d.writeAtomic(name, fresh+"\n"); err != nil {
			return "", d.writeErr(err)
		}
		return fresh, nil
	default:
		return "", fmt.Errorf("data directory: read %s: %w", path, err)
	}
}

// writeAtomic puts content in file name whole or not at all: a temporary
// file, synced, renamed over it, and the directory synced so the rename
// survives a power cut.
func (d *Dir) writeAtomic(name, content string) error {
	f, err := os.CreateTemp(d.path, tempPrefix+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(d.path, name)); err != nil {
		return err
	}
	dir, err := os.Open(d.path)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func (d *Dir) writeErr(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("data directory %s is not writable: %w", d.path, err)
	}
	return fmt.Errorf("data directory %s: %w", d.path, err)
}

// Path is the directory, as given to Open.
func (d *Dir) Path() string { return d.path }

// TokenSeed is the 32-byte Ed25519 seed access tokens are signed with.
func (d *Dir) TokenSeed() []byte { return append([]byte(nil), d.tokenSeed...) }

// InternalSecret is the secret the embedded services authenticate each
// other with.
func (d *Dir) InternalSecret() string { return d.internalSecret }

// Close releases the lock. The process exiting releases it too, so a
// crashed waggle never leaves its directory locked.
func (d *Dir) Close() error {
	return d.lock.Close()
}
