package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// authenticate registers (register true) or logs in username and stores
// the login.
func (c *cli) authenticate(ctx context.Context, register bool, username, password, displayName, device string) error {
	path, err := profilePath(c.g, c.env.getenv)
	if err != nil {
		return err
	}
	stored := ""
	if old, err := loadProfile(path); err == nil {
		stored = old.Server
	}
	server := c.serverURL(stored)
	if device == "" {
		device = defaultDeviceName()
	}
	accounts := c.anonymousAccounts(server)
	var (
		user     *accountv1.User
		deviceID string
		tokens   *accountv1.Tokens
	)
	if register {
		res, err := accounts.Register(ctx, &accountv1.RegisterRequest{Username: username, Password: password, DisplayName: displayName, DeviceName: device})
		if err != nil {
			return fmt.Errorf("register %s: %w", username, err)
		}
		user, deviceID, tokens = res.GetUser(), res.GetDeviceId(), res.GetTokens()
	} else {
		res, err := accounts.Login(ctx, &accountv1.LoginRequest{Username: username, Password: password, DeviceName: device})
		if err != nil {
			return fmt.Errorf("log in %s: %w", username, err)
		}
		user, deviceID, tokens = res.GetUser(), res.GetDeviceId(), res.GetTokens()
	}
	p := &profile{
		Server:        server,
		UserID:        user.GetUserId(),
		Username:      user.GetUsername(),
		DisplayName:   user.GetDisplayName(),
		DeviceID:      deviceID,
		AccessToken:   tokens.GetAccessToken(),
		AccessExpire:  tokens.GetAccessTokenExpireTime().AsTime(),
		RefreshToken:  tokens.GetRefreshToken(),
		RefreshExpire: tokens.GetRefreshTokenExpireTime().AsTime(),
	}
	if err := saveProfile(path, p); err != nil {
		return err
	}
	verb := "logged in as"
	if register {
		verb = "registered"
	}
	return c.printAccount(verb, accountJSON{UserID: p.UserID, Username: p.Username, DisplayName: p.DisplayName, DeviceID: p.DeviceID, Server: server})
}

func defaultDeviceName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "waggle-cli"
	}
	return "waggle-cli on " + host
}

func (c *cli) printAccount(verb string, a accountJSON) error {
	return c.output(a, func(w io.Writer) {
		name := a.Username
		if a.DisplayName != "" {
			name += " (" + a.DisplayName + ")"
		}
		fmt.Fprintf(w, "%s %s\n  user id    %s\n  device id  %s\n  server     %s\n", verb, name, a.UserID, a.DeviceID, a.Server)
	})
}

func (c *cli) logout(ctx context.Context) error {
	a, err := c.login()
	if err != nil {
		return err
	}
	_, err = a.accounts.Logout(ctx, &accountv1.LogoutRequest{})
	// A login the server no longer accepts is as good as logged out.
	if err != nil && connect.CodeOf(err) != connect.CodeUnauthenticated {
		return fmt.Errorf("log out: %w", err)
	}
	if err := removeProfile(a.creds.path); err != nil {
		return err
	}
	return c.output(map[string]any{"logged_out": true, "username": a.username, "user_id": a.userID}, func(w io.Writer) {
		fmt.Fprintf(w, "logged out %s\n", a.username)
	})
}

func (c *cli) whoami(ctx context.Context) error {
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.accounts.GetUser(ctx, &accountv1.GetUserRequest{UserId: a.userID})
	if err != nil {
		return fmt.Errorf("whoami: %w", err)
	}
	u := res.GetUser()
	return c.printAccount("logged in as", accountJSON{UserID: u.GetUserId(), Username: u.GetUsername(), DisplayName: u.GetDisplayName(),
		DeviceID: a.creds.prof.DeviceID, Server: a.server})
}

func (c *cli) users(ctx context.Context, ids []string) error {
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.accounts.BatchGetUsers(ctx, &accountv1.BatchGetUsersRequest{UserIds: ids})
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	out := make([]userJSON, 0, len(res.GetUsers()))
	found := map[string]bool{}
	for _, u := range res.GetUsers() {
		out = append(out, userOut(u))
		found[u.GetUserId()] = true
	}
	for _, id := range ids {
		if !found[id] {
			fmt.Fprintf(c.env.stderr, "waggle-cli: no user %s\n", id)
		}
	}
	return c.output(map[string]any{"users": out}, func(w io.Writer) {
		rows := make([][]string, len(out))
		for i, u := range out {
			rows[i] = []string{u.UserID, u.Username, u.DisplayName, clock(u.CreateTime)}
		}
		table(w, []string{"USER ID", "USERNAME", "DISPLAY NAME", "CREATED"}, rows)
	})
}

func (c *cli) presenceOf(ctx context.Context, ids []string) error {
	a, err := c.login()
	if err != nil {
		return err
	}
	res, err := a.presence.GetPresence(ctx, &presencev1.GetPresenceRequest{UserIds: ids})
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	out := make([]presenceJSON, len(res.GetPresences()))
	for i, p := range res.GetPresences() {
		out[i] = presenceOut(p)
	}
	return c.output(map[string]any{"presences": out}, func(w io.Writer) {
		rows := make([][]string, len(out))
		for i, p := range out {
			rows[i] = []string{p.UserID, p.Status, strconv.Itoa(int(p.DeviceCount)), clock(p.LastSeen)}
		}
		table(w, []string{"USER ID", "STATUS", "DEVICES", "LAST SEEN"}, rows)
	})
}

// password is the flag's value, else WAGGLE_PASSWORD, else read from the
// terminal without echo (twice when confirm is set).
func (c *cli) password(ctx context.Context, flagValue string, confirm bool) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := c.env.getenv("WAGGLE_PASSWORD"); v != "" {
		return v, nil
	}
	tty, ok := c.env.stdin.(*os.File)
	if !ok || !isTerminal(tty) {
		return "", usagef("no password: pass --password, set WAGGLE_PASSWORD, or run in a terminal to be asked")
	}
	in := bufio.NewReader(tty)
	p, err := c.prompt(ctx, tty, in, "Password: ")
	if err != nil || !confirm {
		return p, err
	}
	again, err := c.prompt(ctx, tty, in, "Password again: ")
	if err != nil {
		return "", err
	}
	if again != p {
		return "", errors.New("the passwords differ")
	}
	return p, nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// prompt reads one line from the terminal with echo turned off (through
// stty, which needs no terminal library); Ctrl-C gives up.
func (c *cli) prompt(ctx context.Context, tty *os.File, in *bufio.Reader, label string) (string, error) {
	fmt.Fprint(c.env.stderr, label)
	if stty(tty, "-echo") == nil {
		defer stty(tty, "echo")
	}
	defer fmt.Fprintln(c.env.stderr)
	line := make(chan string, 1)
	fail := make(chan error, 1)
	go func() {
		s, err := in.ReadString('\n')
		if err != nil && s == "" {
			fail <- fmt.Errorf("read password: %w", err)
			return
		}
		line <- strings.TrimRight(s, "\r\n")
	}()
	select {
	case s := <-line:
		return s, nil
	case err := <-fail:
		return "", err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func stty(tty *os.File, arg string) error {
	cmd := exec.Command("stty", arg)
	cmd.Stdin = tty
	return cmd.Run()
}
