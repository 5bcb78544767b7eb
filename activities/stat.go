package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/kafkasync/kafkasync/internal/audit"
)

// StatInput asks for a remote file's size and age.
type StatInput struct {
	// Source names the SFTP source ("" is default).
	Source     string
	RemotePath string
	// ExpectedSize is the size the job announced, or -1.
	ExpectedSize int64
	// MinAge refuses files modified less than this long ago; they may still be growing.
	MinAge time.Duration
	// FailedDir is the source's on_failure move directory: a file missing at RemotePath but found
	// under it was moved there when an earlier run was dead-lettered.
	FailedDir string
	// Trail holds the workflow's audit events not yet written (see keepTrail).
	Trail []audit.Event
}

// StatResult describes the remote file, and names the host of the worker that looked.
type StatResult struct {
	Size    int64
	ModTime time.Time
	Host    HostClaim
}

// Stat looks at the remote file. A missing file, a directory or a size other than the announced one
// are final; a file younger than MinAge is retried once it is old enough.
func (a *Transfer) Stat(ctx context.Context, in StatInput) (_ StatResult, err error) {
	defer func(end func(error)) { end(err) }(a.keepTrail(ctx, in.Trail))
	// A slot of the server's connection limit. The wait ends a little before this attempt's
	// deadline, with a retryable error, so that a busy server shows as such in the history.
	wctx := ctx
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) > 10*time.Second {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
	}
	// The stat itself is short: bound it, a hung server must not hold the slot for the whole attempt.
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	src, err := a.source(in.Source)
	if err != nil {
		return StatResult{}, err
	}
	c, done, err := a.session(wctx, sctx, src, "")
	if err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			err = fmt.Errorf("stat %s: every connection slot of sftp source %s is in use (max_connections)", in.RemotePath, src.Name)
		}
		return StatResult{}, classify("stat", err)
	}
	stop := abortOnEnd(sctx, c, src.Shared != nil)
	fi, err := c.Stat(in.RemotePath)
	if notExist(err) && in.FailedDir != "" {
		moved := MovedPath(in.FailedDir, in.RemotePath)
		if _, merr := c.Stat(moved); merr == nil {
			err = fmt.Errorf("%w: on_failure moved it to %s when an earlier run was dead-lettered; move it back to replay this job, or submit a job for %s", err, moved, moved)
		}
	}
	stop()
	done(err)
	if err != nil {
		return StatResult{}, classify("stat "+in.RemotePath, err)
	}
	if !fi.Mode().IsRegular() {
		return StatResult{}, final(ErrTypeNotRegular, fmt.Sprintf("stat %s: not a regular file (%s)", in.RemotePath, fi.Mode()))
	}
	if err := a.checkSize(in.RemotePath, fi.Size()); err != nil {
		return StatResult{}, err
	}
	if in.ExpectedSize >= 0 && fi.Size() != in.ExpectedSize {
		return StatResult{}, final(ErrTypeSizeMismatch, fmt.Sprintf("stat %s: size %d, job says %d", in.RemotePath, fi.Size(), in.ExpectedSize))
	}
	if age := a.now().Sub(fi.ModTime()); in.MinAge > 0 && age < in.MinAge {
		wait := in.MinAge - age
		return StatResult{}, temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("stat %s: modified %s ago, younger than min_age %s", in.RemotePath, age.Round(time.Second), in.MinAge),
			ErrTypeTooYoung, temporal.ApplicationErrorOptions{NextRetryDelay: wait})
	}
	return StatResult{Size: fi.Size(), ModTime: fi.ModTime().UTC(), Host: HostClaim{HostID: a.HostID, Queue: a.HostQueue}}, nil
}

// HostClaim names the worker host that will run a job's host-bound steps.
type HostClaim struct {
	HostID string
	Queue  string
}

// ClaimHost offers the host queue of the worker that runs it: a local activity, it runs where the
// workflow task does. The stat offers the first host (StatResult.Host); ClaimHost the next one
// after a move.
func (a *Transfer) ClaimHost(ctx context.Context) (HostClaim, error) {
	return HostClaim{HostID: a.HostID, Queue: a.HostQueue}, nil
}
