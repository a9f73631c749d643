package chat_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/internal/pgtest"
	"github.com/wagglechat/waggle/postgres"
	"github.com/wagglechat/waggle/services/chat"
)

// With Postgres down, a send is unavailable: the SDK resends it with its
// client_msg_id, where internal would tell the app it failed.
func TestSendWithPostgresDownIsUnavailable(t *testing.T) {
	pg := pgtest.StartServer(t)
	ctx := t.Context()
	db, err := postgres.Open(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := postgres.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewChatStore(db)
	f := &fixture{t: t, backend: "postgres", db: pgDB{db}, store: store, svc: chat.New(chat.Config{}, store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	alice, aliceID := f.user("alice")
	_, bobID := f.user("bob")
	conv := f.group(alice, aliceID, bobID)
	f.send(alice, conv, "before")

	pg.Stop()
	sendCtx, cancel := context.WithTimeout(alice, 5*time.Second)
	defer cancel()
	_, err = f.svc.SendMessage(sendCtx, textReq(conv, uuid.NewString(), "while down"))
	wantCode(t, err, connect.CodeUnavailable)
	_, err = f.svc.ListConversations(sendCtx, &chatv1.ListConversationsRequest{})
	wantCode(t, err, connect.CodeUnavailable)
}
