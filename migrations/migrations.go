// Package migrations holds Waggle's SQL migrations, embedded in the binary.
// Files are applied in version order; an applied file is never edited, a
// change is a new file.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
