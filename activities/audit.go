package activities

import (
	"context"
	"strings"

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
