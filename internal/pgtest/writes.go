package pgtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CountWrites installs statement-level triggers on every table of the test
// database but except that count the rows each INSERT, UPDATE and DELETE
// touches, so a test counts writes rather than assuming them. The returned
// function reports the rows written since its previous call.
func CountWrites(t testing.TB, db *pgxpool.Pool, except ...string) func() int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := db.Exec(ctx, `
		CREATE TABLE write_audit (n bigint NOT NULL);
		CREATE FUNCTION audit_rows() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'DELETE' THEN INSERT INTO write_audit SELECT count(*) FROM old_rows;
			ELSE INSERT INTO write_audit SELECT count(*) FROM new_rows; END IF;
			RETURN NULL;
		END $$;`); err != nil {
		t.Fatalf("pgtest: audit table: %v", err)
	}
	rows, err := db.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public'
		AND tablename NOT IN ('write_audit', 'goose_db_version') AND NOT tablename = ANY($1)`, append([]string{}, except...))
	if err != nil {
		t.Fatalf("pgtest: list tables: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("pgtest: list tables: %v", err)
	}
	for _, tbl := range tables {
		for _, op := range []struct{ event, ref string }{
			{"INSERT", "NEW TABLE AS new_rows"}, {"UPDATE", "NEW TABLE AS new_rows"}, {"DELETE", "OLD TABLE AS old_rows"},
		} {
			if _, err := db.Exec(ctx, fmt.Sprintf(`CREATE TRIGGER audit_%s_%s AFTER %s ON %s REFERENCING %s
				FOR EACH STATEMENT EXECUTE FUNCTION audit_rows()`, tbl, strings.ToLower(op.event), op.event, tbl, op.ref)); err != nil {
				t.Fatalf("pgtest: audit trigger on %s: %v", tbl, err)
			}
		}
	}
	return func() int64 {
		var n int64
		if err := db.QueryRow(ctx, `WITH d AS (DELETE FROM write_audit RETURNING n) SELECT coalesce(sum(n), 0) FROM d`).Scan(&n); err != nil {
			t.Fatalf("pgtest: count writes: %v", err)
		}
		return n
	}
}
