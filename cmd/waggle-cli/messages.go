package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/client"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

func textContent(s string) *chatv1.MessageContent {
	return &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: s}}}
}

// messageText is the text of send: the words joined by spaces, or stdin
// for a single "-".
func (c *cli) messageText(words []string) (string, error) {
	text := strings.Join(words, " ")
	if text == "-" {
		b, err := io.ReadAll(c.env.stdin)
		if err != nil {
			return "", fmt.Errorf("read the message from stdin: %w", err)
		}
		text = strings.TrimRight(string(b), "\r\n")
	}
	if strings.TrimSpace(text) == "" {
		return "", usagef("the message is empty")
	}
	return text, nil
}

func (c *cli) send(ctx context.Context, conv string, words []string, overStream bool) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	text, err := c.messageText(words)
	if err != nil {
		return err
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	var m *chatv1.Message
	if overStream {
		m, err = c.sendOverStream(ctx, a, conv, text)
	} else {
		var res *chatv1.SendMessageResponse
		res, err = a.msgs.SendMessage(ctx, &chatv1.SendMessageRequest{ConversationId: conv, ClientMsgId: uuid.NewString(), Content: textContent(text)})
		m = res.GetMessage()
	}
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	out := messageOut(m)
	return c.output(map[string]any{"message": out}, func(w io.Writer) {
		fmt.Fprintf(w, "sent #%d to %s (message %s)\n", out.Seq, out.ConversationID, out.MessageID)
	})
}

// sendOverStream sends one message on an edge session, as an app does.
func (c *cli) sendOverStream(ctx context.Context, a *api, conv, text string) (*chatv1.Message, error) {
	_, _, cursor, err := listConversations(ctx, a, 1)
	if err != nil {
		return nil, err
	}
	s, err := c.openStream(ctx, a, client.State{Cursor: cursor}, "", nil)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	sctx, cancel := context.WithTimeout(s.ctx, c.g.timeout)
	defer cancel()
	return s.client.Send(sctx, conv, textContent(text))
}

func (c *cli) history(ctx context.Context, conv string, limit int, before uint64) error {
	if err := checkIDs("conversation", conv); err != nil {
		return err
	}
	if limit <= 0 {
		return usagef("--limit must be positive")
	}
	a, err := c.login()
	if err != nil {
		return err
	}
	msgs, more, err := fetchHistory(ctx, a, conv, limit, before)
	if err != nil {
		return err
	}
	names := newUserNames(a)
	if !c.g.json {
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.SenderUserID
		}
		names.load(ctx, ids)
	}
	return c.output(map[string]any{"messages": msgs, "more": more}, func(w io.Writer) {
		for _, m := range msgs {
			fmt.Fprintln(w, describe(messageEvent(m), names.name))
		}
		if more {
			fmt.Fprintf(w, "(older messages: waggle-cli history %s --before %d)\n", conv, msgs[0].Seq)
		}
	})
}

// messageEvent presents a message as the event that added it.
func messageEvent(m messageJSON) eventJSON {
	return eventJSON{ConversationID: m.ConversationID, Seq: m.Seq, Kind: "message", ActorUserID: m.SenderUserID, CreateTime: m.CreateTime, Message: &m}
}

// fetchHistory returns up to limit messages before seq before (0: the
// newest), oldest first, and whether older ones remain.
func fetchHistory(ctx context.Context, a *api, conv string, limit int, before uint64) ([]messageJSON, bool, error) {
	msgs := []messageJSON{}
	if before == 1 || limit <= 0 { // nothing comes before seq 1
		return msgs, false, nil
	}
	start := uint64(0) // the newest
	if before > 1 {
		start = before - 1
	}
	more := false
	for token := ""; len(msgs) < limit; {
		res, err := a.msgs.ListMessages(ctx, &chatv1.ListMessagesRequest{ConversationId: conv, Direction: chatv1.Direction_DIRECTION_BACKWARD,
			StartSeq: start, PageSize: int32(min(limit-len(msgs), 200)), PageToken: token})
		if err != nil {
			return nil, false, fmt.Errorf("history: %w", err)
		}
		for _, m := range res.GetMessages() {
			msgs = append(msgs, messageOut(m))
		}
		token = res.GetNextPageToken()
		if more = token != ""; !more {
			break
		}
	}
	slices.Reverse(msgs) // oldest first, as a conversation reads
	return msgs, more, nil
}
