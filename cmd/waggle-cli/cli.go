package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
)

// cli carries what commands share: the global options, the outside world
// and an HTTP client.
type cli struct {
	g    globals
	env  env
	now  func() time.Time
	http *http.Client
}

// api is a logged-in user's view of the server.
type api struct {
	server   string
	edge     string
	creds    *credentials
	userID   string
	username string
	accounts accountv1connect.AccountServiceClient
	convs    chatv1connect.ConversationServiceClient
	msgs     chatv1connect.MessageServiceClient
	presence presencev1connect.PresenceServiceClient
}

// serverURL is --server (or WAGGLE_SERVER), else the stored login's
// server, else the default.
func (c *cli) serverURL(stored string) string {
	switch {
	case c.g.server != "":
		return strings.TrimSuffix(c.g.server, "/")
	case stored != "":
		return stored
	}
	return defaultServer
}

// timeoutOption bounds every unary call by --timeout.
func (c *cli) timeoutOption() connect.ClientOption {
	d := c.g.timeout
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if d <= 0 {
				return next(ctx, req)
			}
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, req)
		}
	}))
}

// anonymousAccounts is AccountService without credentials: register,
// login, refresh.
func (c *cli) anonymousAccounts(server string) accountv1connect.AccountServiceClient {
	return accountv1connect.NewAccountServiceClient(c.http, server, c.timeoutOption())
}

// login loads the stored login and returns clients acting as it.
func (c *cli) login() (*api, error) {
	path, err := profilePath(c.g, c.env.getenv)
	if err != nil {
		return nil, err
	}
	prof, err := loadProfile(path)
	if err != nil {
		return nil, err
	}
	server := c.serverURL(prof.Server)
	edge := strings.TrimSuffix(c.g.edge, "/")
	if edge == "" {
		edge = server
	}
	creds := &credentials{path: path, accounts: c.anonymousAccounts(server), now: c.now, prof: prof}
	opts := []connect.ClientOption{c.timeoutOption(), connect.WithInterceptors(creds.interceptor())}
	return &api{
		server:   server,
		edge:     edge,
		creds:    creds,
		userID:   prof.UserID,
		username: prof.Username,
		accounts: accountv1connect.NewAccountServiceClient(c.http, server, opts...),
		convs:    chatv1connect.NewConversationServiceClient(c.http, server, opts...),
		msgs:     chatv1connect.NewMessageServiceClient(c.http, server, opts...),
		presence: presencev1connect.NewPresenceServiceClient(c.http, server, opts...),
	}, nil
}

// output prints v as indented JSON with --json, else calls text.
func (c *cli) output(v any, text func(w io.Writer)) error {
	if c.g.json {
		enc := json.NewEncoder(c.env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	text(c.env.stdout)
	return nil
}

// table writes aligned columns: a header row, then rows.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}
