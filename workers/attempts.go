package workers

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
)

// attemptRecorder writes an audit event for every failed attempt of a job's step, retried or not,
// from the worker that ran it: the workflow sees only an activity's last error.
type attemptRecorder struct {
	interceptor.WorkerInterceptorBase
	store *audit.Store
	log   *slog.Logger
}

// recordedSteps are the activities whose failed attempts the audit trail shows.
var recordedSteps = map[string]bool{"Stat": true, "Download": true, "Verify": true, "Promote": true, "Upload": true, "Small": true}

func (r *attemptRecorder) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &attemptInterceptor{r: r}
	i.Next = next
	return i
}

type attemptInterceptor struct {
	interceptor.ActivityInboundInterceptorBase
	r *attemptRecorder
}

func (i *attemptInterceptor) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := i.Next.ExecuteActivity(ctx, in)
	if err != nil {
		i.r.record(ctx, err)
	}
	return res, err
}

func (r *attemptRecorder) record(ctx context.Context, err error) {
	info := activity.GetInfo(ctx)
	if !recordedSteps[info.ActivityType.Name] {
		return
	}
	step := strings.ToLower(info.ActivityType.Name)
	if s := activities.FailedStep(err); s != "" {
		step = s
	}
	detail := "retried"
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.NonRetryable() {
		detail = "final"
	}
	if rp := info.RetryPolicy; rp != nil && rp.MaximumAttempts > 0 && info.Attempt >= rp.MaximumAttempts {
		detail = "last attempt"
	}
	// The attempt's own context may be the reason it failed: the row gets its own time.
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	werr := r.store.RecordAttempt(wctx, audit.Attempt{
		JobID: strings.TrimPrefix(info.WorkflowExecution.ID, "file-"), RunID: info.WorkflowExecution.RunID,
		ActivityID: info.ActivityID, Attempt: int(info.Attempt), Step: step, Error: errorText(err),
		Detail: detail, At: time.Now(),
	})
	if werr != nil {
		r.log.Warn("audit a failed attempt", "workflow_id", info.WorkflowExecution.ID, "step", step, "err", werr)
	}
}

// errorText is the activity's own message, without the SDK's wrapping.
func errorText(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	return err.Error()
}
