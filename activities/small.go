package activities

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/semaphore"

	"github.com/kafkasync/kafkasync/internal/audit"
)

// SmallInput is the whole host-side transfer of one small file.
type SmallInput struct {
	JobID string
	// Source names the SFTP source ("" is default); Bucket receives the object ("": s3.bucket).
	Source     string
	Bucket     string
	RemotePath string
	Size       int64
	// ModTime is the remote file's modification time as Stat saw it; zero: ask the server.
	ModTime   time.Time
	RangeSize int64
	// Connections overrides the worker's default when > 0.
	Connections int
	// MD5 is the expected digest, or "".
	MD5 string
	// Key is the S3 key.
	Key string
	// Trail holds the workflow's audit events not yet written (see keepTrail).
	Trail []audit.Event
}

// SmallResult reports a small file's transfer.
type SmallResult struct {
	Download DownloadResult
	MD5      string
	Upload   UploadResult
}

// Small runs the host steps of one small file as one activity, in memory: it reads the file whole
// (checking it did not change meanwhile), hashes it, and uploads those bytes, with no staging file,
// journal or rename, for files that take less time to move than the round trips between four
// activities; the workflow runs it as a local activity. A retry reads the file again; the upload of
// a key already there with the same MD5 is skipped. A failure names its step (download, verify or
// upload) in the ApplicationError's details (see FailedStep). The files held at once are bounded
// by SmallMemory.
func (a *Transfer) Small(ctx context.Context, in SmallInput) (res SmallResult, err error) {
	defer func(end func(error)) { end(err) }(a.keepTrail(ctx, in.Trail))
	// The steps end a little before the attempt does, so that a step that hangs fails with its
	// name (ErrTypeStepTimeout) rather than as a bare timeout.
	outer := ctx
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) > 10*time.Second {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
	}
	mem := a.smallMemory()
	if in.Size > mem.limit {
		return res, inStep(outer, ctx, "download", final(ErrTypeTooLarge,
			fmt.Sprintf("%s: %d bytes, more than transfer.small_memory (%d)", in.RemotePath, in.Size, mem.limit)))
	}
	if err := mem.Acquire(ctx, max(in.Size, 1)); err != nil {
		return res, inStep(outer, ctx, "download", err)
	}
	defer mem.Release(max(in.Size, 1))
	data, dl, err := a.readWhole(ctx, DownloadInput{JobID: in.JobID, Source: in.Source, RemotePath: in.RemotePath, Size: in.Size,
		RangeSize: in.RangeSize, Connections: in.Connections}, statSeen(ctx, in))
	if err != nil {
		return res, inStep(outer, ctx, "download", err)
	}
	res.Download = dl
	sum := md5.Sum(data)
	res.MD5 = hex.EncodeToString(sum[:])
	if in.MD5 != "" && res.MD5 != in.MD5 {
		return res, inStep(outer, ctx, "verify", final(ErrTypeChecksumMismatch, fmt.Sprintf("md5 %s, job says %s", res.MD5, in.MD5)))
	}
	up, err := a.upload(ctx, UploadInput{JobID: in.JobID, Bucket: in.Bucket, Key: in.Key, MD5: res.MD5, Size: in.Size},
		func() (io.ReadSeekCloser, error) { return readSeekNopCloser{bytes.NewReader(data)}, nil })
	if err != nil {
		return res, inStep(outer, ctx, "upload", err)
	}
	res.Upload = up
	return res, nil
}

// statSeen is the file as the stat before the first attempt saw it: that attempt opens the file
// without asking for its size and time again, and the check at its end compares with the stat's,
// so a file changed since is refused (retryable). A retry asks, as the file may have changed. A
// file swapped away and back, with the same size and time, before that check goes unseen, as
// between any two stats; the job's MD5, when given, still checks the bytes.
func statSeen(ctx context.Context, in SmallInput) *remoteState {
	if in.ModTime.IsZero() || !activity.IsActivity(ctx) || activity.GetInfo(ctx).Attempt > 1 {
		return nil
	}
	return &remoteState{Size: in.Size, ModTime: in.ModTime.UTC()}
}

// smallBudget bounds the bytes of small files a worker holds at once.
type smallBudget struct {
	*semaphore.Weighted
	limit int64
}

// DefaultSmallMemory is SmallMemory's default.
const DefaultSmallMemory = 256 << 20

func (a *Transfer) smallMemory() smallBudget {
	a.smallOnce.Do(func() {
		limit := a.SmallMemory
		if limit <= 0 {
			limit = DefaultSmallMemory
		}
		a.small = smallBudget{semaphore.NewWeighted(limit), limit}
	})
	return a.small
}

// heartbeat records an activity's progress details.
func heartbeat(ctx context.Context, details any) { activity.RecordHeartbeat(ctx, details) }

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

// FailedStep returns the step a Small activity failed in (download, verify, upload), or
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

// readSeekNopCloser lets the upload read and re-read bytes held in memory.
type readSeekNopCloser struct{ *bytes.Reader }

func (readSeekNopCloser) Close() error { return nil }
