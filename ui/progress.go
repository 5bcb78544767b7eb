package ui

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kafkasync/kafkasync/internal/progress"
)

// Progress is a job's live state as Temporal sees it.
type Progress struct {
	// Running is true while the workflow runs; Step names its pending activity ("Download", ...).
	Running bool   `json:"running"`
	Step    string `json:"step,omitempty"`
	Attempt int32  `json:"attempt,omitempty"`
	// The download's last heartbeat: bytes and ranges written and synced, and the current rate.
	Size          int64     `json:"size"`
	BytesDone     int64     `json:"bytes_done"`
	Ranges        int       `json:"ranges"`
	RangesDone    int       `json:"ranges_done"`
	BytesPerSec   float64   `json:"bytes_per_sec"`
	Connections   int       `json:"connections"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	LastFailure   string    `json:"last_failure,omitempty"`
}

// Percent is BytesDone over Size, 0..100.
func (p Progress) Percent() float64 {
	if p.Size <= 0 {
		return 0
	}
	return min(100, 100*float64(p.BytesDone)/float64(p.Size))
}

// TemporalProgress reads progress from DescribeWorkflowExecution: the pending activity and the
// Download activity's heartbeat details.
func TemporalProgress(c client.Client) func(ctx context.Context, workflowID, runID string) (Progress, error) {
	return func(ctx context.Context, workflowID, runID string) (Progress, error) {
		d, err := c.DescribeWorkflowExecution(ctx, workflowID, runID)
		if err != nil {
			return Progress{}, fmt.Errorf("describe %s: %w", workflowID, err)
		}
		var p Progress
		p.Running = d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
		for _, pa := range d.GetPendingActivities() {
			p.Step, p.Attempt = pa.GetActivityType().GetName(), pa.GetAttempt()
			if f := pa.GetLastFailure(); f != nil {
				p.LastFailure = f.GetMessage()
			}
			if hb := pa.GetHeartbeatDetails(); hb != nil && len(hb.GetPayloads()) > 0 {
				get := func(v ...any) error { return converter.GetDefaultDataConverter().FromPayloads(hb, v...) }
				var hp progress.Progress
				if err := get(&hp); err == nil {
					p.Size, p.BytesDone, p.BytesPerSec, p.Ranges, p.Connections = hp.Size, hp.BytesDone, hp.BytesPerSec, hp.Ranges, hp.Connections
					for _, s := range hp.Done {
						p.RangesDone += s.To - s.From
					}
					if t := pa.GetLastHeartbeatTime(); t != nil {
						p.LastHeartbeat = t.AsTime()
					}
				}
			}
			if p.Step == "Download" {
				break
			}
		}
		return p, nil
	}
}
