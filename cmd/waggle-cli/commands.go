package main

import (
	"context"
	"flag"
)

// commands lists waggle-cli's subcommands in the order --help shows them.
var commands = []command{
	{name: "register", args: "<username>", summary: "create an account, log this device in and store the login", min: 1, max: 1,
		setup: func(fs *flag.FlagSet) action {
			password := fs.String("password", "", "password, 8 to 256 bytes (else $WAGGLE_PASSWORD, else asked on the terminal)")
			display := fs.String("display-name", "", "display name")
			device := fs.String("device-name", "", "name of this device (default \"waggle-cli on <hostname>\")")
			return func(ctx context.Context, c *cli, args []string) error {
				p, err := c.password(ctx, *password, true)
				if err != nil {
					return err
				}
				return c.authenticate(ctx, true, args[0], p, *display, *device)
			}
		}},
	{name: "login", args: "<username>", summary: "log this device in and store the login", min: 1, max: 1,
		setup: func(fs *flag.FlagSet) action {
			password := fs.String("password", "", "password (else $WAGGLE_PASSWORD, else asked on the terminal)")
			device := fs.String("device-name", "", "name of this device (default \"waggle-cli on <hostname>\")")
			return func(ctx context.Context, c *cli, args []string) error {
				p, err := c.password(ctx, *password, false)
				if err != nil {
					return err
				}
				return c.authenticate(ctx, false, args[0], p, "", *device)
			}
		}},
	{name: "logout", summary: "log this device out on the server and forget the stored login",
		setup: noFlags(func(ctx context.Context, c *cli, _ []string) error { return c.logout(ctx) })},
	{name: "whoami", summary: "show the logged-in user and device ids", setup: noFlags(func(ctx context.Context, c *cli, _ []string) error {
		return c.whoami(ctx)
	})},
	{name: "users", args: "<user-id>...", summary: "show users' public profiles", min: 1, max: 500,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.users(ctx, args) })},
	{name: "presence", args: "<user-id>...", summary: "show whether users are online", min: 1, max: 500,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.presenceOf(ctx, args) })},
	{name: "conversations", summary: "list your conversations, most recent first, with unread counts and the badge", max: 0,
		setup: func(fs *flag.FlagSet) action {
			limit := fs.Int("limit", 100, "list at most this many (0: all)")
			return func(ctx context.Context, c *cli, _ []string) error { return c.conversations(ctx, *limit) }
		}},
	{name: "direct", args: "<user-id>", summary: "open the 1:1 conversation with a user (the same one every time)", min: 1, max: 1,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.direct(ctx, args[0]) })},
	{name: "group create", args: "--title T <user-id>...", summary: "create a group with you as owner", min: 0, max: -1,
		setup: func(fs *flag.FlagSet) action {
			title := fs.String("title", "", "the group's title")
			return func(ctx context.Context, c *cli, args []string) error { return c.groupCreate(ctx, *title, args) }
		}},
	{name: "group add", args: "<conversation-id> <user-id>...", summary: "add members to a group (owner or admin)", min: 2, max: -1,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.groupAdd(ctx, args[0], args[1:]) })},
	{name: "group remove", args: "<conversation-id> <user-id>", summary: "remove a member from a group", min: 2, max: 2,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.groupRemove(ctx, args[0], args[1]) })},
	{name: "group members", args: "<conversation-id>", summary: "list a group's members with their roles and read positions", min: 1, max: 1,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.groupMembers(ctx, args[0]) })},
	{name: "group rename", args: "<conversation-id> <title>", summary: "rename a group (owner or admin)", min: 2, max: 2,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.groupRename(ctx, args[0], args[1]) })},
	{name: "group leave", args: "<conversation-id>", summary: "leave a group", min: 1, max: 1,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.groupLeave(ctx, args[0]) })},
	{name: "send", args: "<conversation-id> <text>...", summary: "send a text message (\"-\" reads it from stdin)", min: 2, max: -1,
		setup: func(fs *flag.FlagSet) action {
			stream := fs.Bool("stream", false, "send over an edge stream with the Go SDK instead of a unary call")
			return func(ctx context.Context, c *cli, args []string) error { return c.send(ctx, args[0], args[1:], *stream) }
		}},
	{name: "history", args: "<conversation-id>", summary: "show a conversation's messages, oldest first", min: 1, max: 1,
		setup: func(fs *flag.FlagSet) action {
			limit := fs.Int("limit", 20, "show at most this many messages, the newest ones")
			before := fs.Uint64("before", 0, "show only messages with a seq lower than this")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.history(ctx, args[0], *limit, *before)
			}
		}},
	{name: "tail", args: "[conversation-id]", summary: "print events live as they arrive on an edge stream, until Ctrl-C", max: 1,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error {
			conv := ""
			if len(args) > 0 {
				conv = args[0]
			}
			return c.tail(ctx, conv)
		})},
	{name: "chat", args: "<conversation-id>", summary: "chat interactively: print the conversation live and send each line typed", min: 1, max: 1,
		setup: func(fs *flag.FlagSet) action {
			history := fs.Int("history", 10, "messages of history to show first")
			return func(ctx context.Context, c *cli, args []string) error { return c.chat(ctx, args[0], *history) }
		}},
	{name: "read", args: "<conversation-id> <seq>", summary: "mark a conversation read up to seq", min: 2, max: 2,
		setup: noFlags(func(ctx context.Context, c *cli, args []string) error { return c.markRead(ctx, args[0], args[1]) })},
	{name: "receipts", args: "<conversation-id> <seq>", summary: "list who has read a message", min: 2, max: 2,
		setup: func(fs *flag.FlagSet) action {
			unread := fs.Bool("unread", false, "list who has not read it instead")
			limit := fs.Int("limit", 100, "list at most this many members")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.receipts(ctx, args[0], args[1], *unread, *limit)
			}
		}},
}

// noFlags is the setup of a command without flags of its own.
func noFlags(a action) func(*flag.FlagSet) action {
	return func(*flag.FlagSet) action { return a }
}
