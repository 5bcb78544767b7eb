package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

var qRecordAttempt = query("record_attempt")

// Attempt is one failed attempt of an activity of a job's run.
type Attempt struct {
	JobID      string
	RunID      string
	ActivityID string
	Attempt    int
	Step       string
	Error      string
	// Detail says what happens next: retried, or the step's last attempt.
	Detail string
	At     time.Time
}

// RecordAttempt adds a failed attempt to the job's events; writing it again changes nothing. The
// job row keeps its status: the workflow's own events move it.
func (s *Store) RecordAttempt(ctx context.Context, a Attempt) error {
	_, err := s.pool.Exec(ctx, qRecordAttempt, pgx.NamedArgs{
		"job_id": a.JobID, "run_id": a.RunID, "activity_id": a.ActivityID, "attempt": a.Attempt,
		"step": a.Step, "detail": nullStr(a.Detail), "error": nullStr(a.Error), "at": a.At,
	})
	if err != nil {
		return fmt.Errorf("audit attempt %s/%s#%d: %w", a.JobID, a.Step, a.Attempt, err)
	}
	return nil
}
