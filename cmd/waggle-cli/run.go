package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/internal/safetext"
)

// env is what a run sees of the outside world; tests replace it.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the server refused or the call failed
	exitUsage  = 2 // a mistake on the command line
)

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, e env) int {
	// What the server sends (messages, names, titles) may hold control
	// characters, stored before they were refused: a terminal must never
	// act on them. JSON stays valid, as they are escaped the JSON way.
	e.stdout, e.stderr = safetext.Writer{W: e.stdout}, safetext.Writer{W: e.stderr}
	inv, err := parse(args, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "waggle-cli: %v\n", err)
		return exitUsage
	}
	if inv.help {
		usage(e.stdout, inv.cmd)
		return exitOK
	}
	c := &cli{g: inv.globals, env: e, now: time.Now, http: newHTTPClient()}
	if err := inv.action(ctx, c, inv.args); err != nil {
		return report(e.stderr, inv.globals.json, err)
	}
	return exitOK
}

// report prints err for a person, or as JSON for a script, and returns
// the exit code it deserves.
func report(w io.Writer, asJSON bool, err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "waggle-cli: %v\n", err)
		return exitUsage
	}
	var ce *connect.Error
	isConnect := errors.As(err, &ce)
	if asJSON {
		out := errorJSON{Message: err.Error()}
		if isConnect {
			out.Code, out.Message = ce.Code().String(), ce.Message()
		}
		_ = json.NewEncoder(w).Encode(map[string]errorJSON{"error": out})
		return exitFailed
	}
	fmt.Fprintf(w, "waggle-cli: %v\n", err)
	if isConnect {
		if hint := hints[ce.Code()]; hint != "" {
			fmt.Fprintf(w, "hint: %s\n", hint)
		}
	}
	return exitFailed
}

type errorJSON struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

var hints = map[connect.Code]string{
	connect.CodeUnauthenticated: "log in again: waggle-cli login <username>",
	connect.CodeUnimplemented:   "this server does not implement the call yet",
	connect.CodeUnavailable:     "is the server running? set it with --server or WAGGLE_SERVER",
	connect.CodeNotFound:        "check the ids and seqs; a conversation you are not a member of is reported as not found",
}

// newHTTPClient speaks HTTP/2 to http:// URLs with prior knowledge (h2c),
// as Waggle serves cleartext, and HTTP/2 over TLS to https:// URLs: the
// edge stream is bidirectional and needs HTTP/2.
func newHTTPClient() *http.Client {
	t := &http.Transport{}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true)
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}
