package edge

import (
	"context"
	"sync"
	"time"

	"github.com/wagglechat/waggle/auth"
	chatv1 "github.com/wagglechat/waggle/gen/go/waggle/chat/v1"
)

const (
	// maxDeliveryBatch is ReportDeliveries' limit on acks per call; this
	// many pending positions also trigger a report before the interval.
	maxDeliveryBatch = 5000
	// maxPendingDeliveries bounds positions kept while the DeliveryService
	// is failing; past it, failed reports are dropped (delivery state lags,
	// messages are not affected).
	maxPendingDeliveries = 20 * maxDeliveryBatch
)

type deliveryKey struct {
	user, device, conversation string
}

// deliveryBatcher collects the highest acknowledged seq per user, device and
// conversation until the delivery loop reports them. Sessions only touch a
// map under a mutex: reporting never blocks them.
type deliveryBatcher struct {
	mu      sync.Mutex
	pending map[deliveryKey]uint64
	full    chan struct{} // signals that a batch is ready before the tick
}

func newDeliveryBatcher() *deliveryBatcher {
	return &deliveryBatcher{pending: make(map[deliveryKey]uint64), full: make(chan struct{}, 1)}
}

func (d *deliveryBatcher) add(id auth.Identity, ps positions) {
	d.mu.Lock()
	for _, p := range ps {
		k := deliveryKey{id.UserID, id.DeviceID, p.conv}
		if p.seq > d.pending[k] {
			d.pending[k] = p.seq
		}
	}
	n := len(d.pending)
	d.mu.Unlock()
	if n >= maxDeliveryBatch {
		select {
		case d.full <- struct{}{}:
		default:
		}
	}
}

func (d *deliveryBatcher) take() []*chatv1.DeliveryAck {
	d.mu.Lock()
	pending := d.pending
	d.pending = make(map[deliveryKey]uint64)
	d.mu.Unlock()
	acks := make([]*chatv1.DeliveryAck, 0, len(pending))
	for k, seq := range pending {
		acks = append(acks, &chatv1.DeliveryAck{UserId: k.user, DeviceId: k.device, ConversationId: k.conversation, Seq: seq})
	}
	return acks
}

// restore puts back acks whose report failed, unless too many are pending.
func (d *deliveryBatcher) restore(acks []*chatv1.DeliveryAck) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending)+len(acks) > maxPendingDeliveries {
		return false
	}
	for _, a := range acks {
		k := deliveryKey{a.GetUserId(), a.GetDeviceId(), a.GetConversationId()}
		if a.GetSeq() > d.pending[k] {
			d.pending[k] = a.GetSeq()
		}
	}
	return true
}

// deliveryLoop reports acknowledged events every DeliveryFlushInterval, or
// sooner when a full batch is pending, and once more when it stops.
func (e *Edge) deliveryLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.DeliveryFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.flushDeliveries()
			return
		case <-t.C:
		case <-e.deliveries.full:
		}
		e.flushDeliveries()
	}
}

func (e *Edge) flushDeliveries() {
	acks := e.deliveries.take()
	for len(acks) > 0 {
		n := min(len(acks), maxDeliveryBatch)
		batch := acks[:n]
		acks = acks[n:]
		// Not the loop's context: the final flush runs after it is done.
		ctx, cancel := context.WithTimeout(auth.WithInternal(context.Background()), e.cfg.CommandTimeout)
		_, err := e.deps.Deliveries.ReportDeliveries(ctx, &chatv1.ReportDeliveriesRequest{Acks: batch})
		cancel()
		if err != nil {
			kept := e.deliveries.restore(batch)
			e.log.Warn("edge: report deliveries", "acks", n, "kept_for_retry", kept, "err", err)
		}
	}
}
