package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/wagglechat/waggle/client"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// liveStream is an edge session run by the Go SDK in the background.
type liveStream struct {
	client *client.Client
	// ctx ends when the stream is stopped, or with the reason when the
	// login is no longer accepted.
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func (s *liveStream) stop() {
	s.cancel(nil)
	<-s.done
}

// err is why the stream ended: nil when it was stopped or interrupted.
func (s *liveStream) err() error {
	if cause := context.Cause(s.ctx); !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// openStream starts an SDK session on the edge from state (so it syncs only
// what came after it) and waits until it is connected. Events of conv (of
// every conversation if conv is empty) go to out; a nil out drops them.
func (c *cli) openStream(ctx context.Context, a *api, state client.State, conv string, out chan<- *chatv1.Event) (*liveStream, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	store := &client.MemoryStore{}
	if err := store.Save(sctx, state); err != nil {
		cancel(nil)
		return nil, err
	}
	token := func(ctx context.Context) (string, error) {
		tok, err := a.creds.token(ctx)
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			cancel(err) // retrying cannot help: the login is gone
		}
		return tok, err
	}
	cl, err := client.New(client.Config{
		Dialers: []client.Dialer{authDialer{Dialer: client.ConnectDialer(c.http, a.edge), creds: a.creds, fail: cancel}},
		Token:   token,
		OnEvent: func(ev *chatv1.Event) {
			if out == nil || (conv != "" && ev.GetConversationId() != conv) {
				return
			}
			select {
			case out <- ev:
			case <-sctx.Done():
			}
		},
		Store:      store,
		ClientName: "waggle-cli",
		Logger:     slog.New(slog.NewTextHandler(c.env.stderr, nil)),
	})
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("start the stream: %w", err)
	}
	s := &liveStream{client: cl, ctx: sctx, cancel: cancel, done: make(chan struct{})}
	go func() {
		if err := cl.Run(sctx); err != nil {
			cancel(err) // refused for good: tail and chat end with why
		}
		close(s.done)
	}()
	wctx, wcancel := context.WithTimeout(sctx, c.g.timeout)
	defer wcancel()
	if err := cl.WaitConnected(wctx); err != nil {
		s.stop()
		if cause := s.err(); cause != nil {
			return nil, cause
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("no session with the edge at %s within %s", a.edge, c.g.timeout)
	}
	return s, nil
}

// authDialer renews the access token when the edge refuses it (it expired
// on the way, or the server restarted with a new signing key), so the
// SDK's next attempt uses a fresh one; a login that cannot be renewed ends
// the stream through fail.
type authDialer struct {
	client.Dialer
	creds *credentials
	fail  context.CancelCauseFunc
}

func (d authDialer) Dial(ctx context.Context) (client.Stream, error) {
	s, err := d.Dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return &authStream{Stream: s, ctx: ctx, d: d}, nil
}

type authStream struct {
	client.Stream
	ctx   context.Context
	d     authDialer
	hello string // the token sent in Hello, read before the first Recv
}

func (s *authStream) Send(f *edgev1.ClientFrame) error {
	if h := f.GetHello(); h != nil {
		s.hello = h.GetAccessToken()
	}
	return s.Stream.Send(f)
}

func (s *authStream) Recv() (*edgev1.ServerFrame, error) {
	f, err := s.Stream.Recv()
	if connect.CodeOf(err) == connect.CodeUnauthenticated && s.hello != "" {
		if _, rerr := s.d.creds.renew(s.ctx, s.hello); rerr != nil {
			s.d.fail(rerr)
		}
		s.hello = ""
	}
	return f, err
}

// conversationState is where a live stream of a user starts: the sync
// cursor taken before the list was read, and each conversation's newest
// seq, so that only what comes next is shown.
func conversationState(cursor string, convs []conversationJSON) client.State {
	st := client.State{Cursor: cursor, Seqs: map[string]uint64{}}
	for _, cv := range convs {
		st.Seqs[cv.ConversationID] = cv.LastSeq
	}
	return st
}

// eventUsers lists the users an event's text mentions.
func eventUsers(ev eventJSON) []string {
	return append([]string{ev.ActorUserID}, ev.UserIDs...)
}

func (c *cli) tail(ctx context.Context, conv string) error {
	if conv != "" {
		if err := checkIDs("conversation", conv); err != nil {
			return err
		}
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	convs, _, cursor, err := listConversations(ctx, a, 0)
	if err != nil {
		return err
	}
	names := newUserNames(a)
	labels := map[string]string{}
	if !c.g.json {
		ids := make([]string, len(convs))
		for i, cv := range convs {
			ids[i] = cv.PeerUserID
		}
		names.load(ctx, ids)
		for _, cv := range convs {
			labels[cv.ConversationID] = label(cv, names.name)
		}
	}
	what := "every conversation"
	if conv != "" {
		res, err := a.convs.GetConversation(ctx, &chatv1.GetConversationRequest{ConversationId: conv})
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		what = label(conversationOut(res.GetConversation()), names.name)
	}

	events := make(chan *chatv1.Event, 256)
	s, err := c.openStream(ctx, a, conversationState(cursor, convs), conv, events)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	defer s.stop()
	fmt.Fprintf(c.env.stderr, "waggle-cli: tailing %s as %s (Ctrl-C to stop)\n", what, a.username)
	enc := json.NewEncoder(c.env.stdout)
	for {
		select {
		case <-s.ctx.Done():
			return s.err()
		case ev := <-events:
			e := eventOut(ev)
			if c.g.json {
				if err := enc.Encode(e); err != nil {
					return fmt.Errorf("write output: %w", err)
				}
				continue
			}
			if e.Kind == "conversation_created" && e.Title != "" {
				labels[e.ConversationID] = e.Title
			}
			names.load(ctx, eventUsers(e))
			prefix := ""
			if conv == "" {
				l := labels[e.ConversationID]
				if l == "" {
					l = shortID(e.ConversationID)
				}
				prefix = "[" + l + "] "
			}
			fmt.Fprintln(c.env.stdout, prefix+describe(e, names.name))
		}
	}
}

const chatHelp = `Type a line and press Enter to send it. Commands:
  /quit   leave (Ctrl-D too)
  /help   this help
Start a message with // to send a line that begins with /.`

func (c *cli) chat(ctx context.Context, conv string, historyLen int) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	// The cursor first: whatever happens after it reaches the stream.
	_, _, cursor, err := listConversations(ctx, a, 1)
	if err != nil {
		return err
	}
	res, err := a.convs.GetConversation(ctx, &chatv1.GetConversationRequest{ConversationId: conv})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	cv := conversationOut(res.GetConversation())
	history, _, err := fetchHistory(ctx, a, conv, historyLen, 0)
	if err != nil {
		return err
	}
	names := newUserNames(a)
	ids := []string{cv.PeerUserID}
	for _, m := range history {
		ids = append(ids, m.SenderUserID)
	}
	names.load(ctx, ids)

	events := make(chan *chatv1.Event, 256)
	s, err := c.openStream(ctx, a, conversationState(cursor, []conversationJSON{cv}), conv, events)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer s.stop()
	fmt.Fprintf(c.env.stderr, "waggle-cli: chatting in %s as %s; /help for help, /quit or Ctrl-D to leave\n", label(cv, names.name), a.username)

	var shown, marked uint64 // the newest seq printed, and marked read
	show := func(e eventJSON) {
		if e.Seq <= shown {
			return // already in the history printed at the start
		}
		names.load(ctx, eventUsers(e))
		fmt.Fprintln(c.env.stdout, describe(e, names.name))
		shown = e.Seq
	}
	for _, m := range history {
		show(messageEvent(m))
	}
	shown = max(shown, cv.LastSeq)
	// What is on screen has been read.
	markRead := func() {
		if shown <= marked {
			return
		}
		if _, err := a.msgs.MarkRead(ctx, &chatv1.MarkReadRequest{ConversationId: conv, Seq: shown}); err != nil {
			fmt.Fprintf(c.env.stderr, "waggle-cli: mark read: %v\n", err)
		}
		marked = shown
	}
	markRead()

	input := make(chan inputEnd, 1)
	go func() { input <- c.chatInput(s, conv) }()
	var (
		end     *inputEnd
		timeout <-chan time.Time
	)
	for {
		if end != nil && shown >= end.last {
			return end.err
		}
		select {
		case <-s.ctx.Done():
			return s.err()
		case e := <-input:
			if e.err == nil {
				e.err = s.err()
			}
			// Show our last message before leaving, as a person would see it.
			end, timeout = &e, time.After(2*time.Second)
		case <-timeout:
			return end.err
		case ev := <-events:
			show(eventOut(ev))
			if len(events) == 0 {
				markRead()
			}
		}
	}
}

// inputEnd is how the input of a chat ended: the seq of the last message
// it sent, and why it stopped.
type inputEnd struct {
	last uint64
	err  error
}

// chatInput sends each line of stdin until it ends or /quit; it reports
// how many lines could not be sent.
func (c *cli) chatInput(s *liveStream, conv string) inputEnd {
	in := bufio.NewScanner(c.env.stdin)
	in.Buffer(make([]byte, 64*1024), 1<<20)
	failed, last := 0, uint64(0)
	for in.Scan() {
		line := strings.TrimRight(in.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case line == "/quit":
			return inputEnd{last: last}
		case line == "/help":
			fmt.Fprintln(c.env.stderr, chatHelp)
			continue
		case strings.HasPrefix(line, "//"):
			line = line[1:]
		case strings.HasPrefix(line, "/"):
			fmt.Fprintf(c.env.stderr, "waggle-cli: unknown command %s (/help lists them)\n", strings.Fields(line)[0])
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, c.g.timeout)
		m, err := s.client.Send(ctx, conv, textContent(line))
		cancel()
		switch {
		case s.ctx.Err() != nil:
			return inputEnd{} // the stream ended; chat reports why
		case err != nil:
			failed++
			fmt.Fprintf(c.env.stderr, "waggle-cli: not sent: %v\n", err)
		default:
			last = m.GetSeq()
		}
	}
	if err := in.Err(); err != nil {
		return inputEnd{last: last, err: fmt.Errorf("read stdin: %w", err)}
	}
	if failed > 0 {
		return inputEnd{last: last, err: fmt.Errorf("%d messages not sent", failed)}
	}
	return inputEnd{last: last}
}
