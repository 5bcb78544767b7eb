package activities

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/metrics"
)

// Record writes the audit events of one workflow task, in one transaction. It is idempotent: a
// retry of the same events changes nothing.
func (a *Transfer) Record(ctx context.Context, evs []audit.Event) error {
	added, err := a.Audit.RecordAll(ctx, evs)
	for _, ev := range added {
		if ev.Finished {
			metrics.Jobs.WithLabelValues(strings.ToLower(ev.Status), job.SourceName(ev.Source)).Inc()
		}
	}
	return err
}

// trailDelay is how long a step that carries the workflow's unwritten audit events may run before
// it writes them itself.
const trailDelay = time.Second

// keepTrail writes the audit events a step carries for its workflow (which writes them with the
// step's outcome, to save a transaction) when the step runs longer than trailDelay or fails: a
// job that waits, on a slot, a slow server or a retry, shows in the audit trail meanwhile, and a
// failed attempt's row finds its job. The returned end, called with the step's error, waits for a
// write under way, and tries once more after a failed step if it did not land. Writes are
// idempotent, so the workflow's own write of the same events adds nothing; it writes them anyway.
func (a *Transfer) keepTrail(ctx context.Context, trail []audit.Event) (end func(error)) {
	if len(trail) == 0 {
		return func(error) {}
	}
	var mu sync.Mutex
	written := false
	write := func() {
		mu.Lock()
		defer mu.Unlock()
		if written {
			return
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := a.Record(wctx, trail); err != nil {
			a.log(ctx, trail[0].JobID).Warn("audit events of a step that waits or failed", "err", err)
			return
		}
		written = true
	}
	t := time.AfterFunc(trailDelay, write)
	return func(err error) {
		fired := !t.Stop()
		switch {
		case err != nil:
			write()
		case fired:
			mu.Lock() // the timer's write, if one is under way, ends first
			mu.Unlock()
		}
	}
}
