package edge

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// codeMappings is what each core code becomes on each listener and in an
// Error frame, spelled out so that no mapping changes unseen. Clients parse
// the frame's name as a Connect code.
var codeMappings = []struct {
	code    Code
	name    string
	connect connect.Code
	grpc    codes.Code
}{
	{CodeCanceled, "canceled", connect.CodeCanceled, codes.Canceled},
	{CodeUnknown, "unknown", connect.CodeUnknown, codes.Unknown},
	{CodeInvalidArgument, "invalid_argument", connect.CodeInvalidArgument, codes.InvalidArgument},
	{CodeDeadlineExceeded, "deadline_exceeded", connect.CodeDeadlineExceeded, codes.DeadlineExceeded},
	{CodeNotFound, "not_found", connect.CodeNotFound, codes.NotFound},
	{CodeResourceExhausted, "resource_exhausted", connect.CodeResourceExhausted, codes.ResourceExhausted},
	{CodeFailedPrecondition, "failed_precondition", connect.CodeFailedPrecondition, codes.FailedPrecondition},
	{CodeUnimplemented, "unimplemented", connect.CodeUnimplemented, codes.Unimplemented},
	{CodeInternal, "internal", connect.CodeInternal, codes.Internal},
	{CodeUnavailable, "unavailable", connect.CodeUnavailable, codes.Unavailable},
	{CodeUnauthenticated, "unauthenticated", connect.CodeUnauthenticated, codes.Unauthenticated},
	// Codes only services produce, passed on by commands.
	{Code(6), "already_exists", connect.CodeAlreadyExists, codes.AlreadyExists},
	{Code(7), "permission_denied", connect.CodePermissionDenied, codes.PermissionDenied},
	{Code(10), "aborted", connect.CodeAborted, codes.Aborted},
	{Code(11), "out_of_range", connect.CodeOutOfRange, codes.OutOfRange},
	{Code(15), "data_loss", connect.CodeDataLoss, codes.DataLoss},
}

func TestCodeNames(t *testing.T) {
	for _, m := range codeMappings {
		if got := m.code.String(); got != m.name {
			t.Errorf("Code(%d) is named %q, want %q", m.code, got, m.name)
		}
		var parsed connect.Code
		if err := parsed.UnmarshalText([]byte(m.name)); err != nil || parsed != m.connect {
			t.Errorf("a client parses %q as %v (%v), want %v", m.name, parsed, err, m.connect)
		}
	}
	if got := Code(17).String(); got != "code_17" {
		t.Errorf("Code(17) is named %q, want code_17", got)
	}
}

func TestConnectErrorMapping(t *testing.T) {
	for _, m := range codeMappings {
		t.Run(m.name, func(t *testing.T) {
			cause := errors.New("why")
			// Wrapped, as a session's close error may be.
			err := connectError(fmt.Errorf("edge: op: %w", newError(m.code, cause)))
			ce := new(connect.Error)
			if !errors.As(err, &ce) {
				t.Fatalf("mapped to %T %v, want a *connect.Error", err, err)
			}
			if ce.Code() != m.connect || ce.Message() != "why" || !errors.Is(err, cause) || len(ce.Details()) != 0 {
				t.Fatalf("mapped to %v (code %v, %d details), want %v: why, the cause kept, no details", ce, ce.Code(), len(ce.Details()), m.connect)
			}
			back := fromConnectError(connect.NewError(m.connect, cause))
			if back.Code != m.code || back.Message() != "why" {
				t.Fatalf("a connect %v read back as %v, want %v: why", m.connect, back, m.code)
			}
		})
	}
	for _, err := range []error{nil, io.EOF, errors.New("write: broken pipe")} {
		if got := connectError(err); got != err {
			t.Errorf("connectError(%v) = %v, want it unchanged", err, got)
		}
	}
}

func TestGRPCStatusMapping(t *testing.T) {
	for _, m := range codeMappings {
		t.Run(m.name, func(t *testing.T) {
			err := grpcStatus(fmt.Errorf("edge: op: %w", newError(m.code, errors.New("why"))))
			st, ok := status.FromError(err)
			if !ok || st.Code() != m.grpc || st.Message() != "why" || len(st.Details()) != 0 {
				t.Fatalf("mapped to %v, want a status %v: why, no details", err, m.grpc)
			}
			back := fromStatus(status.Error(m.grpc, "why"))
			if CodeOf(back) != m.code || back.Error() != m.name+": why" {
				t.Fatalf("a gRPC %v read back as %v, want %v: why", m.grpc, back, m.code)
			}
		})
	}
	if err := grpcStatus(nil); err != nil {
		t.Errorf("grpcStatus(nil) = %v", err)
	}
	if st := status.Convert(grpcStatus(errors.New("write: broken pipe"))); st.Code() != codes.Unknown || st.Message() != "write: broken pipe" {
		t.Errorf("an error not the core's mapped to %v, want unknown", st)
	}
	if err := fromStatus(io.EOF); err != io.EOF {
		t.Errorf("fromStatus(io.EOF) = %v, want io.EOF: a clean end", err)
	}
}
