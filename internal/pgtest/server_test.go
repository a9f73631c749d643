package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestServerStopsAndRestarts checks the throwaway server keeps what was
// committed across an immediate stop, and refuses connections while down.
func TestServerStopsAndRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs initdb and a Postgres server")
	}
	s := StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec := func(sql string) error {
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("connected to a stopped server")
	}
	s.Start()
	if err := exec("SELECT n FROM kept"); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}
