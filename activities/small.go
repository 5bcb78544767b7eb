package activities

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// SmallInput is the whole host-side transfer of one small file.
type SmallInput struct {
	JobID string
	// Source names the SFTP source ("" is default); Bucket receives the object ("": s3.bucket).
	Source     string
	Bucket     string
	RemotePath string
	Size       int64
	RangeSize  int64
	// Connections overrides the worker's default when > 0.
	Connections int
	// MD5 is the expected digest, or "".
	MD5 string
	// Key is the S3 key; the file waits under completed/<job id>/<key>.
	Key string
}

// SmallResult reports a small file's transfer.
type SmallResult struct {
	Download DownloadResult
	MD5      string
	Upload   UploadResult
	// Reused is true when an earlier attempt had already verified and promoted the file: this one
	// only uploaded it.
	Reused bool
}

// Small runs Download, Verify, Promote and Upload of one small file as one activity, for files that
// take less time to move than the round trips between four activities; the workflow runs it as a
// local activity. Each step behaves as on its own. A failure names its step in the
// ApplicationError's details (see FailedStep); a retry that finds the file already promoted (same
// size and the job's MD5; never without one) goes straight to the upload.
func (a *Transfer) Small(ctx context.Context, in SmallInput) (SmallResult, error) {
	var res SmallResult
	// The steps end a little before the attempt does, so that a step that hangs fails with its
	// name (ErrTypeStepTimeout) rather than as a bare timeout.
	outer := ctx
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) > 10*time.Second {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
	}
	// Reuse only what the job's own MD5 vouches for: without one, a file an earlier run of this job
	// left (before the remote file changed) could pass for this one's.
	if _, err := a.Staging.Stat(StagingName(in.JobID)); errors.Is(err, fs.ErrNotExist) && in.MD5 != "" {
		if fi, err := a.Completed.Stat(CompletedPath(in.JobID, in.Key)); err == nil && fi.Mode().IsRegular() && fi.Size() == in.Size {
			if sum, err := a.completedMD5(CompletedPath(in.JobID, in.Key)); err == nil && sum == in.MD5 {
				res.MD5, res.Reused = sum, true
			}
		}
	}
	if !res.Reused {
		dl, err := a.Download(ctx, DownloadInput{JobID: in.JobID, Source: in.Source, RemotePath: in.RemotePath, Size: in.Size,
			RangeSize: in.RangeSize, Connections: in.Connections})
		if err != nil {
			return res, inStep(outer, ctx, "download", err)
		}
		res.Download = dl
		vr, err := a.Verify(ctx, VerifyInput{JobID: in.JobID, MD5: in.MD5, Size: in.Size})
		if err != nil {
			return res, inStep(outer, ctx, "verify", err)
		}
		res.MD5 = vr.MD5
		if _, err := a.Promote(ctx, PromoteInput{JobID: in.JobID, Key: in.Key, Size: in.Size}); err != nil {
			return res, inStep(outer, ctx, "promote", err)
		}
	}
	up, err := a.Upload(ctx, UploadInput{JobID: in.JobID, Bucket: in.Bucket, Key: in.Key, MD5: res.MD5, Size: in.Size})
	if err != nil {
		return res, inStep(outer, ctx, "upload", err)
	}
	res.Upload = up
	return res, nil
}

// heartbeat records an activity's progress details.
func heartbeat(ctx context.Context, details any) { activity.RecordHeartbeat(ctx, details) }

func (a *Transfer) completedMD5(name string) (string, error) {
	f, err := a.Completed.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// inStep names the step of a Small failure, keeping its type, message and retryability. attempt is
// the activity's context, steps the one the steps run with, which ends a little earlier.
func inStep(attempt, steps context.Context, step string, err error) error {
	if attempt.Err() != nil {
		return err // cancelled or timed out: the SDK reports it as such
	}
	opts := temporal.ApplicationErrorOptions{Cause: err, Details: []any{step}}
	if errors.Is(steps.Err(), context.DeadlineExceeded) {
		return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("step %s did not finish before the attempt's deadline", step),
			ErrTypeStepTimeout, opts)
	}
	typ, msg := goTypeName(err), err.Error()
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		typ, msg = app.Type(), app.Message()
		opts.NonRetryable, opts.NextRetryDelay = app.NonRetryable(), app.NextRetryDelay()
	}
	return temporal.NewApplicationErrorWithOptions(msg, typ, opts)
}

// FailedStep returns the step a Small activity failed in (download, verify, promote, upload), or
// "" when err does not come from one.
func FailedStep(err error) string {
	var app *temporal.ApplicationError
	var step string
	if errors.As(err, &app) && app.HasDetails() && app.Details(&step) == nil {
		return step
	}
	return ""
}

// goTypeName is the error's Go type name without package or pointer, the type the SDK gives an
// error that is not an ApplicationError.
func goTypeName(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}
