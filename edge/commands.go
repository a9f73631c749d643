package edge

import (
	"context"
	"errors"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
	edgev1 "github.com/wagglechat/waggle/gen/go/waggle/edge/v1"
)

// maxPendingCommands bounds a session's queued commands. Clients are
// expected to keep a few in flight; one that floods gets resource_exhausted
// answers rather than unbounded memory or a stalled reader.
const maxPendingCommands = 64

// enqueueCommand queues a command. Commands of a session run one at a time,
// in arrival order (a client's sends keep their order), on a goroutine that
// exists only while commands are queued, so an idle session costs none and
// the reader keeps handling acks and pings meanwhile.
func (s *session) enqueueCommand(f *edgev1.ClientFrame) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.commands) >= maxPendingCommands {
		s.mu.Unlock()
		s.enqueueError(f.GetId(), CodeResourceExhausted, "too many commands in flight: wait for answers")
		return
	}
	s.commands = append(s.commands, f)
	if !s.commandsRunning {
		s.commandsRunning = true
		// No Add after close: finish waits only once closed is set.
		s.commandsDone.Add(1)
		go s.runCommands()
	}
	s.mu.Unlock()
}

func (s *session) runCommands() {
	defer s.commandsDone.Done()
	for {
		s.mu.Lock()
		if len(s.commands) == 0 || s.closed {
			s.commands = nil
			s.commandsRunning = false
			s.mu.Unlock()
			return
		}
		f := s.commands[0]
		s.commands[0] = nil
		s.commands = s.commands[1:]
		s.mu.Unlock()
		s.enqueueControl(s.runCommand(f))
	}
}

// runCommand executes one command and returns its answer frame.
func (s *session) runCommand(f *edgev1.ClientFrame) *edgev1.ServerFrame {
	ctx, cancel := context.WithTimeout(s.callContext(), s.e.cfg.CommandTimeout)
	defer cancel()
	res, err := s.execute(ctx, f)
	if err != nil {
		e := s.publicError("edge: command", err)
		return errorFrame(f.GetId(), e.Code, e.Message())
	}
	return &edgev1.ServerFrame{Id: f.GetId(), Kind: &edgev1.ServerFrame_Result{Result: res}}
}

// callContext is the context of calls made for the session: it ends with
// the session, carries its identity and id, and is marked internal, as an
// edge calling handlers in-process must (auth.WithInternal).
func (s *session) callContext() context.Context { return s.callContextFrom(s.ctx) }

// callContextFrom is ctx carrying the session's identity, marked internal.
func (s *session) callContextFrom(ctx context.Context) context.Context {
	return auth.WithInternal(auth.WithIdentity(ctx, s.ident))
}

func (s *session) execute(ctx context.Context, f *edgev1.ClientFrame) (*edgev1.Result, error) {
	m := s.e.deps.Messages
	switch k := f.GetKind().(type) {
	case *edgev1.ClientFrame_SendMessage:
		return forward(ctx, k.SendMessage, m.SendMessage, func(r *chatv1.SendMessageResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_SendMessage{SendMessage: r}}
		})
	case *edgev1.ClientFrame_Sync:
		return forward(ctx, k.Sync, m.Sync, func(r *chatv1.SyncResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_Sync{Sync: r}}
		})
	case *edgev1.ClientFrame_MarkRead:
		return forward(ctx, k.MarkRead, m.MarkRead, func(r *chatv1.MarkReadResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_MarkRead{MarkRead: r}}
		})
	case *edgev1.ClientFrame_SendTyping:
		return forward(ctx, k.SendTyping, m.SendTyping, func(r *chatv1.SendTypingResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_SendTyping{SendTyping: r}}
		})
	case *edgev1.ClientFrame_AddReaction:
		return forward(ctx, k.AddReaction, m.AddReaction, func(r *chatv1.AddReactionResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_AddReaction{AddReaction: r}}
		})
	case *edgev1.ClientFrame_RemoveReaction:
		return forward(ctx, k.RemoveReaction, m.RemoveReaction, func(r *chatv1.RemoveReactionResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_RemoveReaction{RemoveReaction: r}}
		})
	case *edgev1.ClientFrame_EditMessage:
		return forward(ctx, k.EditMessage, m.EditMessage, func(r *chatv1.EditMessageResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_EditMessage{EditMessage: r}}
		})
	case *edgev1.ClientFrame_DeleteMessagesForMe:
		return forward(ctx, k.DeleteMessagesForMe, m.DeleteMessagesForMe, func(r *chatv1.DeleteMessagesForMeResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_DeleteMessagesForMe{DeleteMessagesForMe: r}}
		})
	case *edgev1.ClientFrame_RecallMessage:
		return forward(ctx, k.RecallMessage, m.RecallMessage, func(r *chatv1.RecallMessageResponse) *edgev1.Result {
			return &edgev1.Result{Kind: &edgev1.Result_RecallMessage{RecallMessage: r}}
		})
	case *edgev1.ClientFrame_PresenceSubscription:
		snap, err := s.updatePresenceSubscription(ctx, k.PresenceSubscription)
		if err != nil {
			return nil, err
		}
		return &edgev1.Result{Kind: &edgev1.Result_PresenceSnapshot{PresenceSnapshot: snap}}, nil
	default:
		// handle routes only commands here.
		return nil, newError(CodeInternal, errors.New("not a command"))
	}
}

// forward makes one service call. A nil request or response (never sent by
// generated code, but possible in-process) is treated as an empty message.
func forward[Req, Res any](ctx context.Context, req *Req, call func(context.Context, *Req) (*Res, error), wrap func(*Res) *edgev1.Result) (*edgev1.Result, error) {
	if req == nil {
		req = new(Req)
	}
	res, err := call(ctx, req)
	if err != nil {
		return nil, err
	}
	if res == nil {
		res = new(Res)
	}
	return wrap(res), nil
}
