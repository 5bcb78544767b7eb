package activities

import (
	"context"

	"github.com/kafkasync/kafkasync/internal/audit"
)

// Record writes one audit event. It is idempotent: a retry of the same event changes nothing.
func (a *Transfer) Record(ctx context.Context, ev audit.Event) error {
	return a.Audit.Record(ctx, ev)
}
