package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/kafkasync/kafkasync/internal/hostlimit"
	"github.com/kafkasync/kafkasync/internal/metrics"
)

// slot takes a slot of the SFTP server's limits (hostlimit.Conn or hostlimit.Job), waiting as long
// as ctx allows. Inside an activity it heartbeats details() while it waits, so a long wait is not
// taken for a dead worker. Without limits it returns a nil lease at once.
func (a *Transfer) slot(ctx context.Context, jobID, kind string, details func() any) (*hostlimit.Lease, error) {
	if a.Limits == nil {
		return nil, nil
	}
	if l, ok := a.Limits.TryAcquire(kind); ok {
		return l, nil
	}
	start := time.Now()
	a.log(ctx, jobID).Info("waiting for a slot of the sftp server's limit", "kind", kind)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if activity.IsActivity(ctx) && details != nil {
		go func() {
			t := time.NewTicker(a.heartbeatEvery())
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
					heartbeat(ctx, details())
				}
			}
		}()
	}
	l, err := a.Limits.Acquire(wctx, kind)
	metrics.HostSlotWait.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if err == nil {
		a.log(ctx, jobID).Info("got a slot of the sftp server's limit", "kind", kind,
			"waited", time.Since(start).Round(time.Millisecond).String())
	}
	return l, err
}
