package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/kafkasync/kafkasync/internal/hostlimit"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// slot takes a slot of the SFTP server's limits (hostlimit.Conn or hostlimit.Job), waiting as long
// as ctx allows. Inside an activity it heartbeats details() while it waits, so a long wait is not
// taken for a dead worker. Without limits it returns a nil lease at once.
func (a *Transfer) slot(ctx context.Context, src *Source, jobID, kind string, details func() any) (*hostlimit.Lease, error) {
	if src.Limits == nil {
		return nil, nil
	}
	if l, ok := src.Limits.TryAcquire(kind); ok {
		return l, nil
	}
	start := time.Now()
	a.log(ctx, jobID).Info("waiting for a slot of the sftp source's limit", "source", src.Name, "kind", kind)
	if activity.IsActivity(ctx) && details != nil {
		defer a.heartbeatWhile(ctx, details)()
	}
	l, err := src.Limits.Acquire(ctx, kind)
	metrics.HostSlotWait.WithLabelValues(kind, src.Name).Observe(time.Since(start).Seconds())
	if err == nil {
		a.log(ctx, jobID).Info("got a slot of the sftp source's limit", "source", src.Name, "kind", kind,
			"waited", time.Since(start).Round(time.Millisecond).String())
	}
	return l, err
}

// session returns an SFTP connection for a short operation and the function to call with the
// operation's error when done. With a shared pool (Source.Shared) the connection is a pooled one,
// which holds its own slot of the connection limit; a new one waits for a slot while waitCtx
// allows. Without a pool it is a new connection with a slot of its own, closed by done.
func (a *Transfer) session(waitCtx, ctx context.Context, src *Source, jobID string) (*sftpdial.Client, func(error), error) {
	if src.Shared != nil {
		return src.Shared.Get(waitCtx) // a new connection waits for its slot; the dial has its own timeout
	}
	lease, err := a.slot(waitCtx, src, jobID, hostlimit.Conn, nil)
	if err != nil {
		return nil, nil, err
	}
	c, err := src.SFTP.Dial(ctx)
	if err != nil {
		lease.Release()
		return nil, nil, err
	}
	return c, func(error) { c.Close(); lease.Release() }, nil
}

// PoolSlots is the slot function of src's shared pool: connection slots of src.Limits (none
// without). (A function, not a method: every exported method of Transfer is an activity.)
func PoolSlots(a *Transfer, src *Source) sftpdial.SlotFunc {
	return func(ctx context.Context, wait bool) (func(), <-chan struct{}, error) {
		return a.poolSlot(ctx, src, wait)
	}
}

func (a *Transfer) poolSlot(ctx context.Context, src *Source, wait bool) (func(), <-chan struct{}, error) {
	if src.Limits == nil {
		return func() {}, nil, nil
	}
	if !wait {
		// Another connection while one is open: like a download's extra connections, it leaves the
		// reserve for new jobs.
		l, ok := src.Limits.TryAcquireSpare(hostlimit.Conn)
		if !ok {
			return nil, nil, sftpdial.ErrNoSlot
		}
		return l.Release, l.Lost(), nil
	}
	l, err := a.slot(ctx, src, "", hostlimit.Conn, nil)
	if err != nil {
		return nil, nil, err
	}
	return l.Release, l.Lost(), nil
}

// abortOnEnd drops c when ctx ends, so that reads on a server that stopped answering return. A
// connection of its own is dropped at once. A shared one (shared) serves other operations too: it is
// dropped only if this operation has not returned 5 s later, so that cancelling one job does not
// break the others' operations. stop disarms it; call it before handing the connection back.
func abortOnEnd(ctx context.Context, c *sftpdial.Client, shared bool) (stop func()) {
	if !shared {
		stop := context.AfterFunc(ctx, c.Abort)
		return func() { stop() }
	}
	var (
		mu      sync.Mutex
		timer   *time.Timer
		stopped bool
	)
	stopCtx := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer = time.AfterFunc(5*time.Second, c.Abort)
		}
	})
	return func() {
		stopCtx()
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if timer != nil {
			timer.Stop()
		}
	}
}
