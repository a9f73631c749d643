// Package errcode chooses, in one place, the Connect code a failure gets
// where it leaves a service. The code tells the caller what to do: the SDK
// resends a message with the same client_msg_id on unavailable,
// deadline_exceeded and aborted, so a dependency that is down or slow must
// never be reported as internal (the send may have been stored; "failed"
// would make the user's retry a duplicate).
package errcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/redis/go-redis/v9"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Of returns the code for err, met by a handler whose own context is ctx.
//
//   - An error that carries a code keeps it, except canceled when ctx is not
//     done: a downstream call cut by a dropped connection (connect-go reports
//     a reset connection as canceled), which the caller did not ask for.
//   - The caller's own cancellation or deadline: canceled, deadline_exceeded.
//   - Postgres or Redis unreachable, restarting, out of connections or
//     timing out: unavailable. So is the embedded database locked by
//     another process or out of disk.
//   - A serialization failure or deadlock: aborted (the transaction may be
//     retried as it is).
//   - Anything else: internal.
func Of(ctx context.Context, err error) connect.Code {
	if ce := new(connect.Error); errors.As(err, &ce) {
		if ce.Code() == connect.CodeCanceled && ctx.Err() == nil {
			return connect.CodeUnavailable
		}
		return ce.Code()
	}
	switch {
	case errors.Is(err, context.Canceled):
		if ctx.Err() == nil {
			return connect.CodeUnavailable
		}
		return connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return connect.CodeDeadlineExceeded
	}
	if pe := new(pgconn.PgError); errors.As(err, &pe) {
		return postgresCode(pe.Code)
	}
	if se := new(sqlite.Error); errors.As(err, &se) {
		return sqliteCode(se.Code())
	}
	var reply redis.Error
	if errors.As(err, &reply) && !errors.Is(err, redis.Nil) {
		return redisCode(reply.Error())
	}
	if connectionLost(err) {
		return connect.CodeUnavailable
	}
	return connect.CodeInternal
}

// postgresCode maps an error Postgres itself reported, by SQLSTATE class.
func postgresCode(sqlstate string) connect.Code {
	switch {
	case sqlstate == "40001", sqlstate == "40P01": // serialization_failure, deadlock_detected
		return connect.CodeAborted
	case strings.HasPrefix(sqlstate, "08"), // connection exception
		strings.HasPrefix(sqlstate, "53"),                             // insufficient resources: too many connections, disk full
		sqlstate == "57P01", sqlstate == "57P02", sqlstate == "57P03", // shutting down, crashed, starting up
		sqlstate == "57014": // query_canceled: statement_timeout
		return connect.CodeUnavailable
	}
	return connect.CodeInternal
}

// sqliteCode maps an error of the embedded database by its primary result
// code: the database's lock held by another process past the busy timeout,
// or a full disk, is unavailable; anything else (a constraint, a syntax
// error, a corrupt file) is internal.
func sqliteCode(code int) connect.Code {
	switch code & 0xff { // extended codes keep the primary one in their low byte
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_FULL:
		return connect.CodeUnavailable
	}
	return connect.CodeInternal
}

// redisCode maps an error reply: a Redis that is loading, failing over or
// out of clients is unavailable; any other reply is a bug in the command.
func redisCode(reply string) connect.Code {
	for _, prefix := range []string{"LOADING", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY", "MOVED", "ASK", "ERR max number of clients"} {
		if strings.HasPrefix(reply, prefix) {
			return connect.CodeUnavailable
		}
	}
	return connect.CodeInternal
}

// connectionLost reports errors of a connection, dial or pool rather than
// of a request.
func connectionLost(err error) bool {
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, puddle.ErrClosedPool) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, redis.ErrPoolExhausted)
}

// Public returns err as a public caller may see it, with the code from Of.
// Errors that carry a code keep their message; a dependency's failure is
// reported without its text (which may hold SQL, keys or addresses), and
// an internal error is logged with op first.
func Public(ctx context.Context, log *slog.Logger, op string, err error) error {
	code := Of(ctx, err)
	if ce := new(connect.Error); errors.As(err, &ce) && code == ce.Code() {
		return ce
	}
	switch code {
	case connect.CodeCanceled:
		return connect.NewError(code, fmt.Errorf("%s: canceled", op))
	case connect.CodeDeadlineExceeded:
		return connect.NewError(code, fmt.Errorf("%s: timed out", op))
	case connect.CodeUnavailable:
		log.WarnContext(ctx, op+": dependency unavailable", "err", err)
		return connect.NewError(code, fmt.Errorf("%s: temporarily unavailable, retry", op))
	case connect.CodeAborted:
		return connect.NewError(code, fmt.Errorf("%s: conflict with a concurrent change, retry", op))
	}
	log.ErrorContext(ctx, op, "err", err)
	return connect.NewError(connect.CodeInternal, fmt.Errorf("%s failed", op))
}
