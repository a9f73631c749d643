package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/google/uuid"
)

// queryAll runs q in tx and returns every row as scan reads it.
func queryAll[T any](ctx context.Context, tx *sql.Tx, scan func(*sql.Rows) (T, error), q string, args ...any) ([]T, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var all []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		all = append(all, v)
	}
	return all, rows.Err()
}

// jsonList is v as one JSON array, a single parameter however many values
// it holds, read in SQL with json_each. v holds ids, strings or integers,
// whose encoding cannot fail.
func jsonList[T uuid.UUID | string | int64](v []T) string {
	if v == nil {
		return "[]" // not null, which json_each reads as one row
	}
	b, _ := json.Marshal(v)
	return string(b)
}
