package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wagglechat/waggle/client"
	accountv1 "github.com/wagglechat/waggle/gen/go/waggle/account/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/account/v1/accountv1connect"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/chat/v1/chatv1connect"
	"github.com/wagglechat/waggle/gen/go/waggle/contact/v1/contactv1connect"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
	"github.com/wagglechat/waggle/gen/go/waggle/presence/v1/presencev1connect"
)

// user is one logged-in device of a user, with unary clients acting as it.
type user struct {
	name, id, deviceID, token string
	convs                     chatv1connect.ConversationServiceClient
	msgs                      chatv1connect.MessageServiceClient
	presence                  presencev1connect.PresenceServiceClient
	contacts                  contactv1connect.ContactServiceClient
}

const password = "correct horse battery"

func register(t testing.TB, chatURL, name string) *user {
	t.Helper()
	accounts := accountv1connect.NewAccountServiceClient(h2c(), chatURL)
	tokens, err := client.Register(context.Background(), accounts, &accountv1.RegisterRequest{Username: name, Password: password, DeviceName: name + "-1"})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	tok, err := tokens.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return asUser(chatURL, name, tokens.UserID(), tokens.DeviceID(), tok)
}

// login logs another device of an existing user in.
func login(t testing.TB, chatURL, name string) *user {
	t.Helper()
	accounts := accountv1connect.NewAccountServiceClient(h2c(), chatURL)
	res, err := accounts.Login(context.Background(), &accountv1.LoginRequest{Username: name, Password: password, DeviceName: name + "-2"})
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return asUser(chatURL, name, res.GetUser().GetUserId(), res.GetDeviceId(), res.GetTokens().GetAccessToken())
}

func asUser(chatURL, name, id, device, token string) *user {
	bearer := bearer(token)
	return &user{name: name, id: id, deviceID: device, token: token,
		convs:    chatv1connect.NewConversationServiceClient(h2c(), chatURL, bearer),
		msgs:     chatv1connect.NewMessageServiceClient(h2c(), chatURL, bearer),
		presence: presencev1connect.NewPresenceServiceClient(h2c(), chatURL, bearer),
		contacts: contactv1connect.NewContactServiceClient(h2c(), chatURL, bearer)}
}

// bearer is a client option sending token on every call.
func bearer(token string) connect.Option {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// newGroup creates a group of owner and members and returns its id.
func newGroup(t *testing.T, owner *user, members ...*user) string {
	t.Helper()
	var ids []string
	for _, m := range members {
		ids = append(ids, m.id)
	}
	res, err := owner.convs.CreateGroupConversation(context.Background(), &chatv1.CreateGroupConversationRequest{Title: "group", MemberUserIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetConversation().GetConversationId()
}

// newDirect finds or creates the direct conversation of a and b.
func newDirect(t *testing.T, a, b *user) string {
	t.Helper()
	res, err := a.convs.CreateDirectConversation(context.Background(), &chatv1.CreateDirectConversationRequest{PeerUserId: b.id})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetConversation().GetConversationId()
}

func (u *user) lastSeq(t *testing.T, conv string) uint64 {
	t.Helper()
	res, err := u.convs.GetConversation(context.Background(), &chatv1.GetConversationRequest{ConversationId: conv})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetConversation().GetLastSeq()
}

// device runs the Go SDK for one user device and records what it applies.
type device struct {
	name       string
	user       *user
	client     *client.Client
	mu         sync.Mutex
	events     map[string][]*chatv1.Event
	appliedAt  []time.Time // when each event was applied, any conversation
	edge       string      // the edge id of the latest session
	userEvents []*chatv1.UserEvent
	pushes     []*edgev1.Push
	stop       func() // disconnects the device for good
}

func connectEdge(url string) client.Dialer { return client.ConnectDialer(h2c(), url) }

func grpcEdge(t *testing.T, addr string) client.Dialer {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return client.GRPCDialer(conn)
}

func newDevice(t *testing.T, name string, u *user, dialers ...client.Dialer) *device {
	t.Helper()
	d, err := startDevice(t, name, u, dialers...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// startDevice is newDevice for any goroutine: it returns an error instead
// of failing the test.
func startDevice(t *testing.T, name string, u *user, dialers ...client.Dialer) (*device, error) {
	d := &device{name: name, user: u, events: map[string][]*chatv1.Event{}}
	var err error
	d.client, err = client.New(client.Config{
		Dialers:    dialers,
		Token:      func(context.Context) (string, error) { return u.token, nil },
		ClientName: "e2e " + name,
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond,
		OnEvent: func(ev *chatv1.Event) {
			d.mu.Lock()
			d.events[ev.GetConversationId()] = append(d.events[ev.GetConversationId()], ev)
			d.appliedAt = append(d.appliedAt, time.Now())
			d.mu.Unlock()
		},
		OnUserEvent: func(ev *chatv1.UserEvent) {
			d.mu.Lock()
			d.userEvents = append(d.userEvents, ev)
			d.mu.Unlock()
		},
		OnSession: func(w *edgev1.Welcome) {
			d.mu.Lock()
			d.edge = w.GetEdgeId()
			d.mu.Unlock()
		},
		OnPush: func(p *edgev1.Push) {
			d.mu.Lock()
			d.pushes = append(d.pushes, p)
			d.mu.Unlock()
		},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.client.Run(ctx); close(done) }()
	d.stop = func() { cancel(); <-done }
	t.Cleanup(d.stop)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := d.client.WaitConnected(wctx); err != nil {
		return nil, fmt.Errorf("%s: not connected: %w", name, err)
	}
	return d, nil
}

// seqs lists the seqs the device applied in conv, in the order applied.
func (d *device) seqs(conv string) []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s []uint64
	for _, ev := range d.events[conv] {
		s = append(s, ev.GetSeq())
	}
	return s
}

func (d *device) messageIDs(conv string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for _, ev := range d.events[conv] {
		if m := ev.GetMessage(); m != nil {
			ids = append(ids, m.GetMessageId())
		}
	}
	return ids
}

func (d *device) send(t *testing.T, conv, text string) *chatv1.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := d.client.Send(ctx, conv, textContent(text))
	if err != nil {
		t.Errorf("%s send %q: %v", d.name, text, err)
	}
	return m
}

func textContent(s string) *chatv1.MessageContent {
	return &chatv1.MessageContent{Body: &chatv1.MessageContent_Text{Text: &chatv1.Text{Body: s}}}
}

func upTo(n uint64) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

// converge waits until every device holds seqs 1..last of conv, then checks
// each holds exactly that: in order, nothing missing, nothing twice.
func converge(t *testing.T, conv string, last uint64, devices ...*device) {
	t.Helper()
	want := upTo(last)
	deadline := time.Now().Add(20 * time.Second)
	for _, d := range devices {
		for len(d.seqs(conv)) < len(want) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := d.seqs(conv); !slices.Equal(got, want) {
			t.Errorf("%s holds %s, want seqs 1..%d exactly once in order", d.name, describe(got), last)
		}
	}
}

// describe summarises a seq list: its length and where it first differs
// from 1, 2, 3, ...
func describe(s []uint64) string {
	for i, v := range s {
		if v != uint64(i+1) {
			return fmt.Sprintf("%d events, first wrong at index %d (seq %d)", len(s), i, v)
		}
	}
	return fmt.Sprintf("%d events, all in order", len(s))
}

func statsLine(devices ...*device) string {
	var b strings.Builder
	for _, d := range devices {
		s := d.client.Stats()
		fmt.Fprintf(&b, "\n  %-22s sessions=%d syncs=%d gaps=%d duplicates_dropped=%d resends=%d",
			d.name, s.Sessions, s.Syncs, s.Gaps, s.Duplicates, s.Resends)
	}
	return b.String()
}

func newClientMsgID() string { return uuid.NewString() }

// eventually polls cond until it holds or 15 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitFor(t, 15*time.Second, what, cond)
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// edgeID is the edge of the device's latest session.
func (d *device) edgeID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.edge
}

// userEventsOf returns the user events the device applied, in order.
func (d *device) userEventsOf() []*chatv1.UserEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.userEvents)
}

// pushed returns the unsequenced pushes the device received.
func (d *device) pushed() []*edgev1.Push {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.pushes)
}

// last returns the device's newest event of conv, or nil.
func (d *device) last(conv string) *chatv1.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	evs := d.events[conv]
	if len(evs) == 0 {
		return nil
	}
	return evs[len(evs)-1]
}
