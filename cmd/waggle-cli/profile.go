package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// profile is a stored login: who, on which server, with which tokens. It
// holds secrets, so its file is readable by its owner only.
type profile struct {
	Server        string    `json:"server"`
	UserID        string    `json:"user_id"`
	Username      string    `json:"username"`
	DisplayName   string    `json:"display_name,omitempty"`
	DeviceID      string    `json:"device_id"`
	AccessToken   string    `json:"access_token"`
	AccessExpire  time.Time `json:"access_token_expire_time"`
	RefreshToken  string    `json:"refresh_token"`
	RefreshExpire time.Time `json:"refresh_token_expire_time"`
}

var profileName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// profilePath is where the credentials of g's profile live: --config (or
// WAGGLE_CLI_CONFIG) if set, else <profile>.json in $XDG_CONFIG_HOME/waggle-cli,
// or ~/.config/waggle-cli without XDG_CONFIG_HOME.
func profilePath(g globals, getenv func(string) string) (string, error) {
	if g.config != "" {
		return g.config, nil
	}
	if !profileName.MatchString(g.profile) {
		return "", usagef("profile name %q: use letters, digits, '_', '.' and '-'", g.profile)
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return "", errors.New("cannot find the config directory: neither XDG_CONFIG_HOME nor HOME is set (use --config)")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "waggle-cli", g.profile+".json"), nil
}

// errNotLoggedIn is returned for a profile that has no stored login.
var errNotLoggedIn = errors.New("not logged in: run waggle-cli register <username> or waggle-cli login <username>")

func loadProfile(path string) (*profile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s)", errNotLoggedIn, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	var p profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("read credentials %s: %w", path, err)
	}
	if p.AccessToken == "" || p.RefreshToken == "" {
		return nil, fmt.Errorf("%w (%s holds no tokens)", errNotLoggedIn, path)
	}
	return &p, nil
}

// saveProfile writes p atomically (a temporary file renamed over the old
// one), so a concurrent reader never sees half a file.
func saveProfile(path string, p *profile) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".waggle-cli-*")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}

func removeProfile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove credentials: %w", err)
	}
	return nil
}
