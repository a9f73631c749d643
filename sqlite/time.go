package sqlite

import (
	"database/sql"
	"fmt"
	"time"
)

// Times are stored as INTEGER Unix microseconds (see the schema), the
// precision Postgres keeps too.

// micros is t as stored; the zero time is NULL.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// timeScanner scans a stored time into *t; NULL is the zero time.
type timeScanner struct{ t *time.Time }

var _ sql.Scanner = timeScanner{}

// scanTime is a Scan destination for a stored time.
func scanTime(t *time.Time) timeScanner { return timeScanner{t} }

func (s timeScanner) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s.t = time.Time{}
	case int64:
		*s.t = time.UnixMicro(v)
	default:
		return fmt.Errorf("sqlite: a time is stored as %T, want INTEGER", v)
	}
	return nil
}

// nullTimeScanner scans a stored time into *t; NULL is nil.
type nullTimeScanner struct{ t **time.Time }

// scanNullTime is a Scan destination for a stored time that may be NULL.
func scanNullTime(t **time.Time) nullTimeScanner { return nullTimeScanner{t} }

func (s nullTimeScanner) Scan(v any) error {
	if v == nil {
		*s.t = nil
		return nil
	}
	var t time.Time
	if err := scanTime(&t).Scan(v); err != nil {
		return err
	}
	*s.t = &t
	return nil
}
