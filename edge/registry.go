package edge

import (
	"context"
	"time"

	"github.com/wagglechat/waggle/auth"
	presencev1 "github.com/wagglechat/waggle/gen/go/waggle/presence/v1"
)

// maxRegistryBatch caps the sessions of one registry call, keeping requests
// well under any sane message size limit (a Session is ~150 bytes).
const maxRegistryBatch = 10000

// renewLoop extends the registry TTL of all of this edge's sessions every
// RenewInterval, so the sessions of an edge that dies expire on their own.
func (e *Edge) renewLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.RenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.renew(ctx)
		}
	}
}

func (e *Edge) renew(ctx context.Context) {
	e.registryOrder.Lock()
	defer e.registryOrder.Unlock()
	all := e.hub.all()
	sessions := make([]*presencev1.Session, len(all))
	for i, s := range all {
		sessions[i] = s.info
	}
	for len(sessions) > 0 {
		n := min(len(sessions), maxRegistryBatch)
		callCtx, cancel := context.WithTimeout(auth.WithInternal(ctx), e.cfg.CommandTimeout)
		res, err := e.deps.Registry.RenewSessions(callCtx, &presencev1.RenewSessionsRequest{
			EdgeId:   e.cfg.EdgeID,
			Sessions: sessions[:n],
		})
		cancel()
		switch {
		case err != nil:
			// The next tick retries; the TTL outlives a few missed renewals.
			e.log.Warn("edge: renew sessions", "sessions", n, "err", err)
		case res.GetRestored() > 0:
			e.log.Warn("edge: registry had lost sessions; restored", "restored", res.GetRestored())
		}
		sessions = sessions[n:]
	}
}
