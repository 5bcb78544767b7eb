package activities

import (
	"context"
	"strings"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/metrics"
)

// Record writes one audit event. It is idempotent: a retry of the same event changes nothing.
func (a *Transfer) Record(ctx context.Context, ev audit.Event) error {
	added, err := a.Audit.RecordNew(ctx, ev)
	if err == nil && added && ev.Finished {
		metrics.Jobs.WithLabelValues(strings.ToLower(ev.Status)).Inc()
	}
	return err
}
