package rpcserver

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	want := Config{
		Addr:                 ":8080",
		ReadMaxBytes:         1 << 20,
		MaxConcurrentStreams: 10000,
		ShutdownTimeout:      15 * time.Second,
	}
	if got.Addr != want.Addr || got.ReadMaxBytes != want.ReadMaxBytes ||
		got.MaxConcurrentStreams != want.MaxConcurrentStreams || got.ShutdownTimeout != want.ShutdownTimeout {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	set := Config{Addr: ":1", ReadMaxBytes: 5, MaxConcurrentStreams: 7, ShutdownTimeout: time.Second}.withDefaults()
	if set.Addr != ":1" || set.ReadMaxBytes != 5 || set.MaxConcurrentStreams != 7 || set.ShutdownTimeout != time.Second {
		t.Errorf("explicit values overridden: %+v", set)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"cert without key", Config{TLSCertFile: garbage}, "both a certificate and a key"},
		{"key without cert", Config{TLSKeyFile: garbage}, "both a certificate and a key"},
		{"missing files", Config{TLSCertFile: filepath.Join(dir, "no.crt"), TLSKeyFile: filepath.Join(dir, "no.key")}, "load TLS key pair"},
		{"unparsable files", Config{TLSCertFile: garbage, TLSKeyFile: garbage}, "load TLS key pair"},
		{"negative read limit", Config{ReadMaxBytes: -1}, "must not be negative"},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, log)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
