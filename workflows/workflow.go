// Package workflows holds the FileTransfer workflow. It only orchestrates: every byte of I/O happens
// in the activities package. It must stay deterministic; replay_test.go replays recorded histories.
package workflows

import (
	"path"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/searchattr"

	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/job"
)

// Name is the registered workflow type name.
const Name = "FileTransfer"

// QueryStatus is the query that returns a Status.
const QueryStatus = "status"

// Options tune one run. The bridge fills them from the config when it starts the workflow, so a
// running workflow keeps the settings it started with.
type Options struct {
	MinAge           time.Duration
	HeartbeatTimeout time.Duration
	// HostTimeout is the schedule-to-start timeout of host-bound steps: how long to wait for the
	// host that holds the staging file before moving the job to another host.
	HostTimeout    time.Duration
	RetryInterval  time.Duration
	MaxAttempts    int
	VerifyAttempts int
	HostMoves      int
	RangeSize      int64
	Connections    int
	Bucket         string
	// SmallFile: files up to this size run their host-bound steps as one activity (Small); 0: never.
	SmallFile int64
	// OnSuccess and OnFailure are what happens to the remote file after the job succeeded or was
	// dead-lettered (the source's on_success and on_failure); the zero value keeps it.
	OnSuccess config.Action
	OnFailure config.Action
}

// Input is the workflow's argument: the validated job, the original message for the dead-letter
// topic, and the options.
type Input struct {
	Job     job.Job
	Message []byte
	Key     []byte
	// Where the job message was read (empty when submitted otherwise).
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	Options         Options
	// SubmittedBy is the account that submitted the job on the dashboard, when it was.
	SubmittedBy string
	// Indexed: the start set the JobID, FileName, JobStatus (QUEUED) and, for a known size,
	// FileSize search attributes, as the bridge does.
	Indexed bool
}

// Result is what a successful run returns.
type Result struct {
	JobID         string
	Size          int64
	MD5           string
	Bucket        string
	Key           string
	Host          string
	Download      activities.DownloadResult
	UploadSkipped bool
}

// Status is the answer to QueryStatus.
type Status struct {
	Stage    string
	Host     string
	HostMove int
	Round    int
}

// a is used only for method names: activities run on workers, never here.
var a *activities.Transfer

// recordActivity names the audit activity for ExecuteLocalActivity, which runs the worker's
// registered Transfer.Record.
const recordActivity = "Record"

type run struct {
	in     Input
	info   *workflow.Info
	seq    int
	status Status
	res    Result
	// attempts counts download attempts over all rounds and hosts.
	attempts int
	// saStatus is the JobStatus search attribute last set; saLater are updates that wait for the
	// next change of it.
	saStatus string
	saLater  []temporal.SearchAttributeUpdate
	// quiet: a small file, whose steps run in one workflow task, indexes only its end.
	quiet bool
	// pending holds the audit events recorded since the last flush.
	pending []audit.Event
	// seen is the remote file the stat found (Size -1 before); upload what the upload left.
	seen   activities.StatResult
	upload activities.UploadResult
}

// FileTransfer runs one job: stat, then on one host download, verify, promote and upload, with an
// audit event for each step. A job that fails for good goes to the dead-letter topic.
func FileTransfer(ctx workflow.Context, in Input) (Result, error) {
	r := &run{in: in, info: workflow.GetInfo(ctx), seen: activities.StatResult{Size: -1}}
	r.res = Result{JobID: in.Job.ID, Size: in.Job.Size, MD5: in.Job.MD5, Key: in.Job.Key(), Bucket: in.Options.Bucket}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return r.status, nil }); err != nil {
		return Result{}, err
	}
	stage, err := r.transfer(ctx)
	if err == nil {
		if err = r.flush(ctx); err == nil {
			r.publishDone(ctx)
			r.dispose(ctx, in.Options.OnSuccess)
			r.status.Stage = "done"
			return r.res, nil
		}
		stage = "audit"
	}
	err = r.deadLetter(ctx, stage, err)
	r.dispose(ctx, in.Options.OnFailure)
	return r.res, err
}

func (r *run) transfer(ctx workflow.Context) (string, error) {
	o := r.in.Options
	if err := r.record(ctx, "queued", "started", audit.StatusQueued, func(ev *audit.Event) {
		ev.MD5Expected = r.in.Job.MD5
		if r.in.SubmittedBy != "" {
			ev.Detail = "submitted by " + r.in.SubmittedBy
		}
		ev.SizeKnown, ev.Size = r.in.Job.Size >= 0, r.in.Job.Size
	}); err != nil {
		return "audit", err
	}
	r.status.Stage = "stat"
	var st activities.StatResult
	// Stat and the host claim are short: local activities, run by the worker that runs this
	// workflow, without a round trip through the server's task queues. The queued event goes with
	// the stat, which writes it should it wait or fail; else the next flush does.
	// Ten minutes: Stat may wait for a slot of the SFTP server's connection limit.
	sctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Minute,
		ScheduleToCloseTimeout: 24 * time.Hour, RetryPolicy: retry(o, o.MaxAttempts), Summary: "stat " + r.in.Job.RemotePath})
	if err := workflow.ExecuteLocalActivity(sctx, "Stat", activities.StatInput{Source: r.in.Job.Source,
		RemotePath: r.in.Job.RemotePath, ExpectedSize: r.in.Job.Size, MinAge: o.MinAge, FailedDir: o.OnFailure.Dir, Trail: r.pending,
	}).Get(ctx, &st); err != nil {
		return "stat", err
	}
	r.res.Size, r.seen = st.Size, st
	if err := r.record(ctx, "stat", "succeeded", audit.StatusQueued, func(ev *audit.Event) {
		ev.SizeKnown, ev.Size = true, st.Size
		ev.Detail = fmt.Sprintf("%d bytes, modified %s", st.Size, st.ModTime.UTC().Format(time.RFC3339))
	}); err != nil {
		return "audit", err
	}
	if !(r.in.Indexed && r.in.Job.Size == st.Size) {
		size := searchattr.FileSize.ValueSet(st.Size)
		if o.SmallFile > 0 && st.Size <= o.SmallFile {
			// A small file's run is one workflow task: its size goes with the status at its end.
			r.saLater = append(r.saLater, size)
		} else if err := workflow.UpsertTypedSearchAttributes(ctx, size); err != nil {
			return "stat", err
		}
	}
	// The worker that ran the stat offers its host; after a move, whichever worker runs this task.
	claim := st.Host
	for move := 0; ; move++ {
		r.status.HostMove = move
		if move > 0 {
			cctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 30 * time.Second,
				ScheduleToCloseTimeout: time.Hour, RetryPolicy: retry(o, 0), Summary: "pick another worker host"})
			if err := workflow.ExecuteLocalActivity(cctx, "ClaimHost").Get(ctx, &claim); err != nil {
				return "claim_host", err
			}
		}
		r.status.Host, r.res.Host = claim.HostID, claim.HostID
		stage, err := r.hostSteps(ctx, claim, st)
		if err != nil && isHostLost(err) && move+1 < max(o.HostMoves, 1) {
			if err := r.record(ctx, stage, "failed", audit.StatusQueued, func(ev *audit.Event) {
				ev.Error = fmt.Sprintf("host %s did not pick up %s within %s: moving to another host", claim.HostID, stage, o.HostTimeout)
			}); err != nil {
				return "audit", err
			}
			continue
		}
		return stage, err
	}
}

// hostSteps runs the steps that need the staging file, all on the claimed host's task queue.
func (r *run) hostSteps(ctx workflow.Context, claim activities.HostClaim, st activities.StatResult) (string, error) {
	o := r.in.Options
	host := func(base workflow.ActivityOptions, maxAttempts int) workflow.Context {
		base.TaskQueue = claim.Queue
		base.ScheduleToStartTimeout = o.HostTimeout
		base.HeartbeatTimeout = o.HeartbeatTimeout
		return withOpts(ctx, base, retry(o, maxAttempts))
	}
	if o.SmallFile > 0 && st.Size <= o.SmallFile {
		r.quiet = true
		return r.smallSteps(ctx, claim, st)
	}
	var sum string
	for round := 1; ; round++ {
		r.status.Stage, r.status.Round = "download", round
		if err := r.recordDownloadStarted(ctx, claim, st.Size, round, ""); err != nil {
			return "audit", err
		}
		if err := r.flush(ctx); err != nil {
			return "audit", err
		}
		var dl activities.DownloadResult
		err := workflow.ExecuteActivity(host(workflow.ActivityOptions{StartToCloseTimeout: 24 * time.Hour,
			Summary: fmt.Sprintf("download %s (%d bytes) on %s, round %d", r.in.Job.RemotePath, st.Size, claim.HostID, round)}, o.MaxAttempts),
			a.Download, activities.DownloadInput{JobID: r.in.Job.ID, Source: r.in.Job.Source, RemotePath: r.in.Job.RemotePath, Size: st.Size,
				RangeSize: o.RangeSize, Connections: o.Connections}).Get(ctx, &dl)
		if err != nil {
			r.attempts += attemptsOf(err, o.MaxAttempts)
			return "download", err
		}
		r.attempts += int(dl.Attempt)
		r.res.Download = dl
		r.status.Stage = "verify"
		if err := r.recordDownloaded(ctx, dl); err != nil {
			return "audit", err
		}
		if err := r.flush(ctx); err != nil {
			return "audit", err
		}
		var vr activities.VerifyResult
		err = workflow.ExecuteActivity(host(workflow.ActivityOptions{StartToCloseTimeout: 6 * time.Hour,
			Summary: "md5 of the staging file"}, 3),
			a.Verify, activities.VerifyInput{JobID: r.in.Job.ID, MD5: r.in.Job.MD5, Size: st.Size}).Get(ctx, &vr)
		if err == nil {
			sum = vr.MD5
			break
		}
		if errorType(err) != activities.ErrTypeChecksumMismatch || round >= max(o.VerifyAttempts, 1) {
			return "verify", err
		}
		if err := r.recordDownloadAgain(ctx, err); err != nil {
			return "audit", err
		}
	}
	r.res.MD5 = sum
	r.status.Stage = "promote"
	if err := r.record(ctx, "verify", "succeeded", audit.StatusVerifying, func(ev *audit.Event) {
		ev.MD5Actual = sum
	}); err != nil {
		return "audit", err
	}
	if err := r.flush(ctx); err != nil {
		return "audit", err
	}
	var pr activities.PromoteResult
	if err := workflow.ExecuteActivity(host(workflow.ActivityOptions{StartToCloseTimeout: 5 * time.Minute,
		Summary: "rename into completed/" + r.in.Job.Key()}, o.MaxAttempts),
		a.Promote, activities.PromoteInput{JobID: r.in.Job.ID, Key: r.in.Job.Key(), Size: st.Size}).Get(ctx, &pr); err != nil {
		return "promote", err
	}
	r.status.Stage = "upload"
	if err := r.record(ctx, "promote", "succeeded", audit.StatusUploading, nil); err != nil {
		return "audit", err
	}
	if err := r.flush(ctx); err != nil {
		return "audit", err
	}
	var up activities.UploadResult
	if err := workflow.ExecuteActivity(host(workflow.ActivityOptions{StartToCloseTimeout: 24 * time.Hour,
		Summary: fmt.Sprintf("upload to s3://%s/%s", o.Bucket, r.in.Job.Key())}, o.MaxAttempts),
		a.Upload, activities.UploadInput{JobID: r.in.Job.ID, Bucket: o.Bucket, Key: r.in.Job.Key(), MD5: sum, Size: st.Size}).Get(ctx, &up); err != nil {
		return "upload", err
	}
	r.res.Bucket, r.res.Key, r.res.UploadSkipped = up.Bucket, up.Key, up.Skipped
	if err := r.recordUploaded(ctx, up); err != nil {
		return "audit", err
	}
	return "", nil
}

// smallSteps runs the host-bound steps of a small file as one local activity, in memory on the
// worker running this workflow task, and records the audit events of hostSteps but the promote,
// which a file that never touches the disk does not have. A checksum mismatch downloads again, as
// there. With the stat, the host claim and the audit rows, the whole job is one workflow task, with
// no activity task and no second round trip through the server; a worker that dies leaves the task
// to another, which runs it all again (the upload of a key already there with the same MD5 is
// skipped). The job's first events wait for Small's outcome and are written with it, in one flush:
// a job that takes milliseconds has its first audit row when it ends, and saves two PostgreSQL
// transactions. Small carries them, and writes them itself when it runs longer than a second or
// fails (then followed by the failed attempt's row).
func (r *run) smallSteps(ctx workflow.Context, claim activities.HostClaim, st activities.StatResult) (string, error) {
	o := r.in.Options
	for round := 1; ; round++ {
		r.status.Stage, r.status.Round = "download", round
		if err := r.recordDownloadStarted(ctx, claim, st.Size, round, ", all steps in one activity"); err != nil {
			return "audit", err
		}
		var sr activities.SmallResult
		summary := fmt.Sprintf("download, verify and upload %s (%d bytes) in memory on %s, round %d", r.in.Job.RemotePath, st.Size, claim.HostID, round)
		in := activities.SmallInput{JobID: r.in.Job.ID, Source: r.in.Job.Source, Bucket: o.Bucket, RemotePath: r.in.Job.RemotePath, Size: st.Size,
			RangeSize: o.RangeSize, Connections: o.Connections, MD5: r.in.Job.MD5, Key: r.in.Job.Key(), Trail: r.pending}
		if round == 1 {
			in.ModTime = st.ModTime // a later round looks at the file again
		}
		// An hour per attempt: the download may wait that long for a slot of the SFTP server's
		// limits (the SDK keeps the workflow task alive meanwhile).
		lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: time.Hour,
			ScheduleToCloseTimeout: 24 * time.Hour, RetryPolicy: retry(o, o.MaxAttempts), Summary: summary})
		if err := workflow.ExecuteLocalActivity(lctx, "Small", in).Get(ctx, &sr); err != nil {
			// A local activity's error carries no retry state: it ran out of attempts unless the
			// error was final.
			var app *temporal.ApplicationError
			if errors.As(err, &app) && app.NonRetryable() {
				r.attempts++
			} else {
				r.attempts += max(o.MaxAttempts, 1)
			}
			stage := activities.FailedStep(err)
			if stage == "" {
				stage = "download"
			}
			// The steps before the failed one succeeded: the audit trail says so, as for large files.
			for _, done := range []struct{ step, status string }{{"download", audit.StatusVerifying},
				{"verify", audit.StatusUploading}} {
				if done.step == stage {
					break
				}
				if err := r.record(ctx, done.step, "succeeded", done.status, func(ev *audit.Event) {
					ev.Detail = "in the same activity as " + stage + ", which failed"
				}); err != nil {
					return "audit", err
				}
			}
			if errorType(err) != activities.ErrTypeChecksumMismatch || round >= max(o.VerifyAttempts, 1) {
				return stage, err
			}
			if err := r.recordDownloadAgain(ctx, err); err != nil {
				return "audit", err
			}
			continue
		}
		dl := sr.Download
		r.attempts += max(int(dl.Attempt), 1)
		r.res.Download, r.res.MD5 = dl, sr.MD5
		r.status.Stage = "upload"
		if err := r.recordDownloaded(ctx, dl); err != nil {
			return "audit", err
		}
		if err := r.record(ctx, "verify", "succeeded", audit.StatusUploading, func(ev *audit.Event) {
			ev.MD5Actual = sr.MD5
		}); err != nil {
			return "audit", err
		}
		up := sr.Upload
		r.res.Bucket, r.res.Key, r.res.UploadSkipped = up.Bucket, up.Key, up.Skipped
		if err := r.recordUploaded(ctx, up); err != nil {
			return "audit", err
		}
		return "", nil
	}
}

// The audit events both host paths (four activities, or Small) record alike.

func (r *run) recordDownloadStarted(ctx workflow.Context, claim activities.HostClaim, size int64, round int, how string) error {
	return r.record(ctx, "download", "started", audit.StatusDownloading, func(ev *audit.Event) {
		ev.Host, ev.Started = claim.HostID, true
		ev.SizeKnown, ev.Size = true, size
		ev.Detail = fmt.Sprintf("round %d on %s", round, claim.HostID) + how
	})
}

func (r *run) recordDownloaded(ctx workflow.Context, dl activities.DownloadResult) error {
	return r.record(ctx, "download", "succeeded", audit.StatusVerifying, func(ev *audit.Event) {
		ev.BytesPerSec = dl.BytesPerSec
		ev.Detail = fmt.Sprintf("%d bytes modified %s in %.3fs (fetched %d, resumed %d) over %d connections, attempt %d",
			dl.Size, dl.ModTime.UTC().Format(time.RFC3339), dl.Seconds, dl.Fetched, dl.Resumed, dl.Connections, dl.Attempt)
	})
}

// recordDownloadAgain records a checksum mismatch that sends the job to another download round.
func (r *run) recordDownloadAgain(ctx workflow.Context, mismatch error) error {
	return r.record(ctx, "verify", "failed", audit.StatusDownloading, func(ev *audit.Event) {
		ev.Error = errorMessage(mismatch)
		ev.Detail = "downloading again"
	})
}

func (r *run) recordUploaded(ctx workflow.Context, up activities.UploadResult) error {
	r.upload = up
	return r.record(ctx, "upload", "succeeded", audit.StatusSucceeded, func(ev *audit.Event) {
		ev.S3Bucket, ev.S3Key, ev.Finished = up.Bucket, up.Key, true
		ev.Detail = fmt.Sprintf("object verified: %d bytes, stored md5 %s, etag %s", up.ObjectSize, up.ObjectMD5, up.ETag)
		if up.Skipped {
			ev.Detail = "object already present with this md5; " + ev.Detail
		}
	})
}

// deadLetter publishes a job that failed for good and records it; it returns the workflow's error.
func (r *run) deadLetter(ctx workflow.Context, stage string, cause error) error {
	r.status.Stage = "dead_letter"
	reason, typ := errorMessage(cause), errorType(cause)
	attempts := max(r.attempts, 1)
	dctx := withOpts(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: 24 * time.Hour,
		Summary: "publish to the dead-letter topic"},
		retry(r.in.Options, 0))
	status, outcome := audit.StatusDeadLettered, "succeeded"
	dlErr := workflow.ExecuteActivity(dctx, a.DeadLetter, activities.DeadLetterInput{
		JobID: r.in.Job.ID, Source: r.in.Job.Source, Message: r.in.Message, Key: r.in.Key, Reason: reason, Stage: stage, ErrorType: typ,
		Attempts: attempts, WorkflowID: r.info.WorkflowExecution.ID, SourceTopic: r.in.SourceTopic,
		SourcePartition: r.in.SourcePartition, SourceOffset: r.in.SourceOffset,
	}).Get(ctx, nil)
	if dlErr != nil {
		status, outcome = audit.StatusFailed, "failed"
		workflow.GetLogger(ctx).Error("dead-letter publish", "job_id", r.in.Job.ID, "error", dlErr)
	}
	err := r.record(ctx, "dead_letter", outcome, status, func(ev *audit.Event) {
		ev.Error = fmt.Sprintf("%s: %s", stage, reason)
		ev.Attempts, ev.Finished = attempts, true
		if dlErr != nil {
			ev.Detail = "dead-letter publish failed: " + errorMessage(dlErr)
		}
	})
	if err == nil {
		err = r.flush(ctx)
	}
	if err != nil {
		workflow.GetLogger(ctx).Error("audit dead letter", "job_id", r.in.Job.ID, "error", err)
	}
	if typ == "" {
		typ = "TransferFailed"
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s", stage, reason), typ, cause)
}

// record adds an audit event to those the next flush writes, and moves the JobStatus search
// attribute; fill adds step-specific fields.
func (r *run) record(ctx workflow.Context, step, outcome, status string, fill func(*audit.Event)) error {
	ev, err := r.event(ctx, step, outcome, status, fill)
	if err == nil {
		r.pending = append(r.pending, ev)
	}
	return err
}

// event numbers the next audit event and moves the JobStatus search attribute to its status.
func (r *run) event(ctx workflow.Context, step, outcome, status string, fill func(*audit.Event)) (audit.Event, error) {
	r.seq++
	switch {
	case status == r.saStatus:
	case r.saStatus == "" && r.in.Indexed && status == audit.StatusQueued:
		r.saStatus = status // the start set it
	case r.quiet && (status == audit.StatusDownloading || status == audit.StatusVerifying || status == audit.StatusUploading):
		// A small file's steps run in one workflow task: each update would be overwritten at once.
	default:
		upd := append([]temporal.SearchAttributeUpdate{searchattr.JobStatus.ValueSet(status)}, r.saLater...)
		if r.saStatus == "" {
			upd = append(upd, searchattr.JobID.ValueSet(r.in.Job.ID), searchattr.FileName.ValueSet(path.Base(r.in.Job.RemotePath)))
		}
		if err := workflow.UpsertTypedSearchAttributes(ctx, upd...); err != nil {
			return audit.Event{}, err
		}
		r.saStatus, r.saLater = status, nil
	}
	ev := audit.Event{
		JobID: r.in.Job.ID, WorkflowID: r.info.WorkflowExecution.ID, RunID: r.info.WorkflowExecution.RunID,
		Seq: r.seq, Step: step, Outcome: outcome, Status: status, At: workflow.Now(ctx),
		RemotePath: r.in.Job.RemotePath, Source: r.in.Job.Source, S3Bucket: r.in.Options.Bucket, S3Key: r.in.Job.Key(),
		Attempts: r.attempts,
	}
	if fill != nil {
		fill(&ev)
	}
	return ev, nil
}

// flush writes the pending audit events in one local activity: by the worker running this
// workflow, in one transaction, with no task round trip through the server, retried (PostgreSQL
// may be away) until it lands. The workflow flushes before each step that waits on something
// outside it and at its end, so the trail is never behind a step that is running for long: the
// short local activities, Stat and Small, carry the pending events instead, and write them
// themselves once they run longer than a second, or fail.
func (r *run) flush(ctx workflow.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	last := r.pending[len(r.pending)-1]
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 30 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour, // without it the SDK gives up after one StartToCloseTimeout
		RetryPolicy:            retry(r.in.Options, 0),
		Summary:                fmt.Sprintf("audit: %d events, last %s %s → %s", len(r.pending), last.Step, last.Outcome, last.Status)})
	if err := workflow.ExecuteLocalActivity(lctx, recordActivity, r.pending).Get(ctx, nil); err != nil {
		return err
	}
	r.pending = nil
	return nil
}

func withOpts(ctx workflow.Context, o workflow.ActivityOptions, rp *temporal.RetryPolicy) workflow.Context {
	o.RetryPolicy = rp
	return workflow.WithActivityOptions(ctx, o)
}

// retry builds the retry policy of a step; maxAttempts 0 retries until the step's timeouts end it.
func retry(o Options, maxAttempts int) *temporal.RetryPolicy {
	initial := o.RetryInterval
	if initial <= 0 {
		initial = time.Second
	}
	return &temporal.RetryPolicy{
		InitialInterval:    initial,
		BackoffCoefficient: 2,
		MaximumInterval:    max(time.Minute, initial),
		MaximumAttempts:    int32(maxAttempts),
	}
}

// isHostLost reports a host-bound step that no worker of the host picked up in time.
func isHostLost(err error) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}

func attemptsOf(err error, maxAttempts int) int {
	var ae *temporal.ActivityError
	if errors.As(err, &ae) && ae.RetryState() == enumspb.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED {
		return maxAttempts
	}
	return 1
}

// errorType is the ApplicationError type of the cause, or the timeout kind.
func errorType(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type()
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return "Timeout" + te.TimeoutType().String()
	}
	return ""
}

// errorMessage is the innermost message: the activity's own words without the SDK's wrapping.
func errorMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return te.Error()
	}
	return err.Error()
}

// dispose applies the source's action to the remote file once the job has ended, as a step of its
// own with its own audit event: its failure is recorded, never undoes the archive and never fails
// the workflow.
func (r *run) dispose(ctx workflow.Context, act config.Action) {
	if act.Kind != "delete" && act.Kind != "move" || r.seen.Size < 0 {
		return
	}
	r.status.Stage = "source_file"
	summary := act.Kind + " " + r.in.Job.RemotePath
	if act.Kind == "move" {
		summary += " to " + act.Dir
	}
	var res activities.DisposeResult
	err := workflow.ExecuteActivity(withOpts(ctx, workflow.ActivityOptions{StartToCloseTimeout: 2 * time.Minute,
		ScheduleToCloseTimeout: time.Hour, Summary: summary}, retry(r.in.Options, r.in.Options.MaxAttempts)),
		a.Dispose, activities.DisposeInput{Source: r.in.Job.Source, RemotePath: r.in.Job.RemotePath, Action: act.Kind, Dir: act.Dir,
			Size: r.seen.Size, ModTime: r.seen.ModTime}).Get(ctx, &res)
	status := r.saStatus
	outcome := "succeeded"
	if err != nil {
		outcome = "failed"
	}
	rerr := r.record(ctx, "source_file", outcome, status, func(ev *audit.Event) {
		ev.Detail = res.Outcome
		if res.To != "" {
			ev.Detail += " to " + res.To
		}
		if err != nil {
			ev.Error, ev.Detail = errorMessage(err), summary+" failed; the archive is not affected"
		}
	})
	if rerr == nil {
		rerr = r.flush(ctx)
	}
	if err != nil || rerr != nil {
		workflow.GetLogger(ctx).Warn("source file action", "job_id", r.in.Job.ID, "action", act.Kind, "error", err, "audit_error", rerr)
	}
}

// publishDone sends the job's done event once its SUCCEEDED row is written: a local activity that
// records its own audit event. A send that fails for good is recorded; the job stays archived.
func (r *run) publishDone(ctx workflow.Context) {
	rec, err := r.event(ctx, "done_event", "succeeded", audit.StatusSucceeded, nil)
	if err != nil {
		workflow.GetLogger(ctx).Error("done event", "job_id", r.in.Job.ID, "error", err)
		return
	}
	up := r.res
	ev := activities.DoneEvent{JobID: r.in.Job.ID, Source: r.in.Job.SourceName(), RemotePath: r.in.Job.RemotePath, Size: up.Size,
		MD5: up.MD5, Bucket: up.Bucket, Key: up.Key, VersionID: r.upload.VersionID, ETag: r.upload.ETag, FinishedAt: workflow.Now(ctx),
		WorkflowID: r.info.WorkflowExecution.ID, RunID: r.info.WorkflowExecution.RunID}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 30 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour, RetryPolicy: retry(r.in.Options, r.in.Options.MaxAttempts),
		Summary: "done event to the done topic"})
	err = workflow.ExecuteLocalActivity(lctx, "PublishDone", activities.DoneInput{Event: ev, Record: rec}).Get(ctx, nil)
	if err == nil {
		return
	}
	workflow.GetLogger(ctx).Error("done event", "job_id", r.in.Job.ID, "error", err)
	rec.Outcome, rec.Error, rec.Detail = "failed", errorMessage(err), "the object is archived; its done event was not sent"
	r.pending = append(r.pending, rec)
	if err := r.flush(ctx); err != nil {
		workflow.GetLogger(ctx).Error("audit done event", "job_id", r.in.Job.ID, "error", err)
	}
}
