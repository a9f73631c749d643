package edge

import (
	"errors"
	"fmt"
	"strconv"
)

// Error is a failure the session core reports: what a stream ends with, or
// a refused call. The core knows no RPC library's errors; each transport
// adapter maps an Error to its own codes, once, where the error leaves it
// (connectError in conn_connect.go, grpcStatus in conn_grpc.go). The
// services the edge calls answer with Connect errors; they become Errors
// where the core meets them (downstream.go).
type Error struct {
	Code Code
	Err  error // the client sees its text
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Message is what the client is told.
func (e *Error) Message() string { return e.Err.Error() }

func newError(code Code, err error) *Error { return &Error{Code: code, Err: err} }

func errorf(code Code, format string, args ...any) *Error {
	return newError(code, fmt.Errorf(format, args...))
}

// Code tells the client what to do about a failure. Codes are numbered as
// google.rpc.Code, the numbering gRPC and Connect share, so a service's
// code crosses the core by value and each adapter converts it by value.
type Code uint32

// The codes the core produces itself. A command's failure passes on the
// code of the service that refused it, which may be any other.
const (
	CodeCanceled           Code = 1
	CodeUnknown            Code = 2
	CodeInvalidArgument    Code = 3
	CodeDeadlineExceeded   Code = 4
	CodeNotFound           Code = 5
	CodeResourceExhausted  Code = 8
	CodeFailedPrecondition Code = 9
	CodeUnimplemented      Code = 12
	CodeInternal           Code = 13
	CodeUnavailable        Code = 14
	CodeUnauthenticated    Code = 16
)

// codeNames spells every code as the protocol's Error frames do (a Connect
// code name), services' codes included.
var codeNames = [...]string{
	1:  "canceled",
	2:  "unknown",
	3:  "invalid_argument",
	4:  "deadline_exceeded",
	5:  "not_found",
	6:  "already_exists",
	7:  "permission_denied",
	8:  "resource_exhausted",
	9:  "failed_precondition",
	10: "aborted",
	11: "out_of_range",
	12: "unimplemented",
	13: "internal",
	14: "unavailable",
	15: "data_loss",
	16: "unauthenticated",
}

func (c Code) String() string {
	if c > 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code_" + strconv.FormatUint(uint64(c), 10)
}

// CodeOf returns the code of the Error in err's chain, or CodeUnknown.
func CodeOf(err error) Code {
	if e := new(Error); errors.As(err, &e) {
		return e.Code
	}
	return CodeUnknown
}
