package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/internal/redistest"
	"github.com/wagglechat/waggle/internal/reflecttest"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"help", []string{"--help"}, 0, "Usage: waggle <command>", ""},
		{"command help", []string{"serve", "--help"}, 0, "env WAGGLE_ADDR", ""},
		{"version", []string{"version"}, 0, "waggle ", ""},
		{"usage error", []string{"nope"}, 2, "", `waggle: unknown command "nope" (see waggle --help)` + "\n"},
		{"config error", []string{"edge", "--redis", "redis://127.0.0.1:1/0"}, 1, "", "waggle: config: roles edge need a token key"},
		{"split role without redis", []string{"edge"}, 1, "", "waggle: config: roles edge need Redis (set --redis or WAGGLE_REDIS_URL); only serve runs without it, embedded\n"},
		{"half-configured serve", []string{"serve", "--postgres", "postgres://127.0.0.1:1/x"}, 1, "", "waggle: config: Postgres is configured but Redis is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, func(string) string { return "" }, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.wantStdout)
			}
			if !strings.HasPrefix(stderr.String(), tt.wantStderr) || (tt.wantStderr == "" && stderr.Len() > 0) {
				t.Errorf("stderr %q, want prefix %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		err  string
		want string
	}{
		{"postgres: down", "postgres: down"},
		{"connect:\n\ta: refused\n\ta: refused", "connect: a: refused"},
		{"first\nsecond\n", "first; second"},
	}
	for _, tt := range tests {
		if got := oneLine(errors.New(tt.err)); got != tt.want {
			t.Errorf("oneLine(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestBinary builds waggle and runs it as an operator would.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "waggle")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("serve until SIGTERM", func(t *testing.T) {
		_, prefix := redistest.New(t)
		addr := freeAddr(t)
		cmd := exec.Command(bin, "serve", "--addr", addr, "--postgres", pgtest.NewURL(t), "--redis-prefix", prefix)
		cmd.Env = append(cleanEnv(), "WAGGLE_REDIS_URL="+redistest.URL(), "WAGGLE_LOG_FORMAT=json")
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		done := make(chan struct{})
		go func() {
			exited <- cmd.Wait()
			close(done)
		}()
		defer func() {
			select {
			case <-done:
			default:
				_ = cmd.Process.Kill()
				<-done
			}
		}()

		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		waitServing(t, conn, exited, &stderr)

		services := reflecttest.Services(t, conn)
		for _, want := range []string{
			"waggle.account.v1.AccountService", "waggle.contact.v1.ContactService",
			"waggle.chat.v1.ConversationService", "waggle.chat.v1.MessageService",
			"waggle.presence.v1.PresenceService",
			"waggle.edge.v1.EdgeService", "grpc.health.v1.Health",
			"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
		} {
			if !slices.Contains(services, want) {
				t.Errorf("reflection does not list %s: %v", want, services)
			}
		}
		for _, internal := range []string{"waggle.chat.v1.DeliveryService", "waggle.chat.v1.RelationService", "waggle.presence.v1.SessionRegistryService"} {
			if slices.Contains(services, internal) {
				t.Errorf("reflection lists the internal %s: %v", internal, services)
			}
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("still running 30s after SIGTERM\nstderr:\n%s", stderr.String())
		}
		if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
			t.Errorf("no JSON 'stopped' log line:\n%s", stderr.String())
		}
	})

	t.Run("embedded, and a second process on its data dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		addr := freeAddr(t)
		cmd := exec.Command(bin, "serve", "--addr", addr, "--data-dir", dir)
		cmd.Env = cleanEnv()
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		waitServing(t, conn, exited, &stderr)
		if want := "stack=embedded data_dir=" + dir; !strings.Contains(stderr.String(), want) {
			t.Errorf("start-up log lacks %q:\n%s", want, stderr.String())
		}

		second := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", dir)
		second.Env = cleanEnv()
		var secondErr bytes.Buffer
		second.Stderr = &secondErr
		err = second.Run()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
			t.Fatalf("second serve on the same data dir: exit = %v, want code 1 (stderr %q)", err, secondErr.String())
		}
		want := fmt.Sprintf("waggle: data directory %s is in use by another waggle process (pid %d): stop it or choose another --data-dir\n", dir, cmd.Process.Pid)
		if secondErr.String() != want {
			t.Errorf("stderr = %q, want %q", secondErr.String(), want)
		}
	})

	t.Run("unreachable postgres", func(t *testing.T) {
		cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--postgres", "postgres://postgres@127.0.0.1:1/x", "--redis", "redis://127.0.0.1:1/0")
		cmd.Env = cleanEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
			t.Fatalf("exit = %v, want code 1", err)
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "waggle: postgres: cannot reach 127.0.0.1:1: ") {
			t.Errorf("stderr = %q, want one line naming postgres", stderr.String())
		}
	})
}

// cleanEnv is the test's environment without WAGGLE_ settings.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "WAGGLE_") })
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitServing(t *testing.T, conn *grpc.ClientConn, exited <-chan error, stderr fmt.Stringer) {
	t.Helper()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("waggle exited early: %v\nstderr:\n%s", err, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not SERVING after 30s: %v %v\nstderr:\n%s", res, err, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockedBuffer is written by the child's stderr copier while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
