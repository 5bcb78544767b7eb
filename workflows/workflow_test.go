package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/job"
)

type fixture struct {
	env      *testsuite.TestWorkflowEnvironment
	statuses []string
	dead     []activities.DeadLetterInput
	claims   int
	statErr  error
	done     []activities.DoneEvent
	batches  int      // audit writes
	trails   []string // the unwritten events each Stat carried, as steps
}

func steps(evs []audit.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Step+":"+ev.Outcome)
	}
	return strings.Join(s, ",")
}

func setup(t *testing.T) *fixture {
	var s testsuite.WorkflowTestSuite
	f := &fixture{env: s.NewTestWorkflowEnvironment()}
	f.env.RegisterWorkflowWithOptions(FileTransfer, workflow.RegisterOptions{Name: Name})
	f.env.RegisterActivity(&activities.Transfer{})
	f.env.OnActivity(a.Record, mockAny, mockAny).Return(func(_ context.Context, evs []audit.Event) error {
		f.batches++
		for _, ev := range evs {
			f.statuses = append(f.statuses, ev.Step+":"+ev.Outcome+":"+ev.Status)
		}
		return nil
	})
	f.env.OnActivity(a.Stat, mockAny, mockAny).Return(func(_ context.Context, in activities.StatInput) (activities.StatResult, error) {
		f.trails = append(f.trails, steps(in.Trail))
		return activities.StatResult{Size: 10, Host: activities.HostClaim{HostID: "h", Queue: "q@h"}}, f.statErr
	})
	f.env.OnActivity(a.ClaimHost, mockAny).Return(func(context.Context) (activities.HostClaim, error) {
		f.claims++
		return activities.HostClaim{HostID: "h", Queue: "q@h"}, nil
	})
	f.env.OnActivity(a.Promote, mockAny, mockAny).Return(activities.PromoteResult{Path: "job-1/in/a.bin"}, nil)
	f.env.OnActivity(a.Upload, mockAny, mockAny).Return(activities.UploadResult{Bucket: "b", Key: "in/a.bin"}, nil)
	f.env.OnActivity(a.PublishDone, mockAny, mockAny).Return(func(_ context.Context, in activities.DoneInput) error {
		f.batches++
		f.done = append(f.done, in.Event)
		f.statuses = append(f.statuses, in.Record.Step+":"+in.Record.Outcome+":"+in.Record.Status)
		return nil
	})
	f.env.OnActivity(a.DeadLetter, mockAny, mockAny).Return(func(_ context.Context, in activities.DeadLetterInput) error {
		f.dead = append(f.dead, in)
		return nil
	})
	return f
}

var mockAny = mock.Anything

func input() Input {
	return Input{
		Job:     job.Job{ID: "a", RemotePath: "/in/a.bin", MD5: "0123456789abcdef0123456789abcdef", Size: 10},
		Message: []byte(`{"id":"a"}`),
		Options: Options{HeartbeatTimeout: time.Second, HostTimeout: time.Minute, MaxAttempts: 2, VerifyAttempts: 2,
			HostMoves: 2, RangeSize: 4, Connections: 2, Bucket: "b"},
	}
}

func TestHappyPath(t *testing.T) {
	f := setup(t)
	f.env.OnActivity(a.Download, mockAny, mockAny).Return(activities.DownloadResult{Size: 10, Fetched: 10, Attempt: 1}, nil)
	f.env.OnActivity(a.Verify, mockAny, mockAny).Return(activities.VerifyResult{MD5: input().Job.MD5}, nil)
	f.env.ExecuteWorkflow(Name, input())
	if err := f.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := f.env.GetWorkflowResult(&r); err != nil {
		t.Fatal(err)
	}
	if r.Key != "in/a.bin" || r.MD5 != input().Job.MD5 || r.Size != 10 || r.Host != "h" {
		t.Fatalf("result %+v", r)
	}
	want := []string{"queued:started:QUEUED", "stat:succeeded:QUEUED", "download:started:DOWNLOADING", "download:succeeded:VERIFYING",
		"verify:succeeded:VERIFYING", "promote:succeeded:UPLOADING", "upload:succeeded:SUCCEEDED", "done_event:succeeded:SUCCEEDED"}
	if !equal(f.statuses, want) {
		t.Fatalf("audit trail %v\nwant %v", f.statuses, want)
	}
	// written before each step that waits: download, verify, promote, upload; at the end; and by the
	// done event's own activity. The stat carries the queued event.
	if f.batches != 6 || !equal(f.trails, []string{"queued:started"}) {
		t.Fatalf("%d audit writes, want 6; the stat carried %q", f.batches, f.trails)
	}
	if len(f.done) != 1 || f.done[0].Key != "in/a.bin" || f.done[0].MD5 != input().Job.MD5 || f.done[0].Bucket != "b" ||
		f.done[0].Source != "default" || f.done[0].Size != 10 {
		t.Fatalf("done events %+v", f.done)
	}
	if len(f.dead) != 0 {
		t.Fatalf("dead letters %v", f.dead)
	}
}

func TestChecksumMismatchDownloadsAgainThenDeadLetters(t *testing.T) {
	f := setup(t)
	downloads := 0
	f.env.OnActivity(a.Download, mockAny, mockAny).Return(func(context.Context, activities.DownloadInput) (activities.DownloadResult, error) {
		downloads++
		return activities.DownloadResult{Size: 10, Attempt: 1}, nil
	})
	f.env.OnActivity(a.Verify, mockAny, mockAny).Return(activities.VerifyResult{},
		temporal.NewNonRetryableApplicationError("md5 x, job says y", activities.ErrTypeChecksumMismatch, nil))
	f.env.ExecuteWorkflow(Name, input())
	err := f.env.GetWorkflowError()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != activities.ErrTypeChecksumMismatch {
		t.Fatalf("workflow error %v, want ChecksumMismatch", err)
	}
	if downloads != 2 {
		t.Fatalf("%d downloads, want 2 (verify_attempts)", downloads)
	}
	if len(f.dead) != 1 || f.dead[0].Stage != "verify" || f.dead[0].ErrorType != activities.ErrTypeChecksumMismatch ||
		f.dead[0].Attempts != 2 || string(f.dead[0].Message) != `{"id":"a"}` {
		t.Fatalf("dead letters %+v", f.dead)
	}
	if last := f.statuses[len(f.statuses)-1]; last != "dead_letter:succeeded:DEAD_LETTERED" {
		t.Fatalf("last audit event %s", last)
	}
}

func TestLostHostMovesJob(t *testing.T) {
	f := setup(t)
	calls := 0
	f.env.OnActivity(a.Download, mockAny, mockAny).Return(func(context.Context, activities.DownloadInput) (activities.DownloadResult, error) {
		calls++
		if calls == 1 {
			return activities.DownloadResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
		}
		return activities.DownloadResult{Size: 10, Fetched: 10, Attempt: 1}, nil
	})
	f.env.OnActivity(a.Verify, mockAny, mockAny).Return(activities.VerifyResult{MD5: input().Job.MD5}, nil)
	f.env.ExecuteWorkflow(Name, input())
	if err := f.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// the stat offers the first host; the move claims another
	if f.claims != 1 || calls != 2 {
		t.Fatalf("claims %d downloads %d, want 1 and 2", f.claims, calls)
	}
}

func TestFinalStatErrorDeadLetters(t *testing.T) {
	f := setup(t)
	f.statErr = temporal.NewNonRetryableApplicationError("stat /in/a.bin: file does not exist", activities.ErrTypeRemoteNotFound, nil)
	f.env.ExecuteWorkflow(Name, input())
	if f.env.GetWorkflowError() == nil {
		t.Fatal("workflow succeeded")
	}
	if len(f.dead) != 1 || f.dead[0].Stage != "stat" || f.dead[0].ErrorType != activities.ErrTypeRemoteNotFound {
		t.Fatalf("dead letters %+v", f.dead)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func smallInput() Input {
	in := input()
	in.Options.SmallFile = 10
	return in
}

func TestSmallFileOneActivity(t *testing.T) {
	f := setup(t)
	smalls := 0
	f.env.OnActivity(a.Small, mockAny, mockAny).Return(func(_ context.Context, in activities.SmallInput) (activities.SmallResult, error) {
		smalls++
		if in.Key != "in/a.bin" || in.MD5 != input().Job.MD5 || in.Size != 10 ||
			steps(in.Trail) != "queued:started,stat:succeeded,download:started" {
			t.Errorf("small input %+v", in)
		}
		return activities.SmallResult{Download: activities.DownloadResult{Size: 10, Fetched: 10, Attempt: 1}, MD5: in.MD5,
			Upload: activities.UploadResult{Bucket: "b", Key: "in/a.bin"}}, nil
	})
	f.env.ExecuteWorkflow(Name, smallInput())
	if err := f.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := f.env.GetWorkflowResult(&r); err != nil {
		t.Fatal(err)
	}
	if smalls != 1 || r.Key != "in/a.bin" || r.MD5 != input().Job.MD5 || r.Bucket != "b" || r.Download.Fetched != 10 {
		t.Fatalf("%d Small activities, result %+v", smalls, r)
	}
	want := []string{"queued:started:QUEUED", "stat:succeeded:QUEUED", "download:started:DOWNLOADING", "download:succeeded:VERIFYING",
		"verify:succeeded:UPLOADING", "upload:succeeded:SUCCEEDED", "done_event:succeeded:SUCCEEDED"}
	if !equal(f.statuses, want) {
		t.Fatalf("audit trail %v\nwant %v", f.statuses, want)
	}
	// at the end, with the events the stat and Small carried, and the done event's
	if f.batches != 2 || !equal(f.trails, []string{"queued:started"}) {
		t.Fatalf("%d audit writes, want 2; the stat carried %q", f.batches, f.trails)
	}
}

func TestSmallFileChecksumMismatchThenUploadFailure(t *testing.T) {
	f := setup(t)
	smalls := 0
	f.env.OnActivity(a.Small, mockAny, mockAny).Return(func(context.Context, activities.SmallInput) (activities.SmallResult, error) {
		smalls++
		return activities.SmallResult{}, temporal.NewApplicationErrorWithOptions("md5 x, job says y", activities.ErrTypeChecksumMismatch,
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{"verify"}})
	})
	f.env.ExecuteWorkflow(Name, smallInput())
	if smalls != 2 {
		t.Fatalf("%d Small activities, want 2 (verify_attempts)", smalls)
	}
	if len(f.dead) != 1 || f.dead[0].Stage != "verify" || f.dead[0].ErrorType != activities.ErrTypeChecksumMismatch ||
		f.dead[0].Reason != "md5 x, job says y" {
		t.Fatalf("dead letters %+v", f.dead)
	}

	f = setup(t)
	f.env.OnActivity(a.Small, mockAny, mockAny).Return(activities.SmallResult{},
		temporal.NewApplicationErrorWithOptions("bucket gone", "NoSuchBucket",
			temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{"upload"}}))
	f.env.ExecuteWorkflow(Name, smallInput())
	if len(f.dead) != 1 || f.dead[0].Stage != "upload" || f.dead[0].ErrorType != "NoSuchBucket" {
		t.Fatalf("dead letters %+v", f.dead)
	}
}

// A small file's activity that hangs is dead-lettered with the step that hung, and the steps before
// it are recorded as done.
func TestSmallFileTimeoutNamesTheStepThatHung(t *testing.T) {
	f := setup(t)
	f.env.OnActivity(a.Small, mockAny, mockAny).Return(activities.SmallResult{},
		temporal.NewApplicationErrorWithOptions("step upload did not finish before the attempt's deadline", activities.ErrTypeStepTimeout,
			temporal.ApplicationErrorOptions{Details: []any{"upload"}}))
	f.env.ExecuteWorkflow(Name, smallInput())
	// Retryable: both attempts (max_attempts 2) ran, and the dead letter counts them.
	if len(f.dead) != 1 || f.dead[0].Stage != "upload" || f.dead[0].ErrorType != activities.ErrTypeStepTimeout || f.dead[0].Attempts != 2 {
		t.Fatalf("dead letters %+v", f.dead)
	}
	want := []string{"queued:started:QUEUED", "stat:succeeded:QUEUED", "download:started:DOWNLOADING", "download:succeeded:VERIFYING",
		"verify:succeeded:UPLOADING", "dead_letter:succeeded:DEAD_LETTERED"}
	if !equal(f.statuses, want) {
		t.Fatalf("audit trail %v\nwant %v", f.statuses, want)
	}
}

// on_success runs after the SUCCEEDED row as its own step with its own event; its failure is
// recorded and the job still succeeds. on_failure runs after the dead letter.
func TestSourceFileActions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ok        bool
		disposeOK bool
		want      string
	}{
		{"moved after success", true, true, "source_file:succeeded:SUCCEEDED"},
		{"a failed move never undoes the archive", true, false, "source_file:failed:SUCCEEDED"},
		{"moved after the dead letter", false, true, "source_file:succeeded:DEAD_LETTERED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			f.env.OnActivity(a.Download, mockAny, mockAny).Return(activities.DownloadResult{Size: 10, Fetched: 10, Attempt: 1}, nil)
			sum := input().Job.MD5
			if !tc.ok {
				sum = "ffffffffffffffffffffffffffffffff"
			}
			f.env.OnActivity(a.Verify, mockAny, mockAny).Return(func(context.Context, activities.VerifyInput) (activities.VerifyResult, error) {
				if !tc.ok {
					return activities.VerifyResult{}, temporal.NewNonRetryableApplicationError("md5 "+sum, activities.ErrTypeChecksumMismatch, nil)
				}
				return activities.VerifyResult{MD5: sum}, nil
			})
			var got []activities.DisposeInput
			f.env.OnActivity(a.Dispose, mockAny, mockAny).Return(func(_ context.Context, in activities.DisposeInput) (activities.DisposeResult, error) {
				got = append(got, in)
				if !tc.disposeOK {
					return activities.DisposeResult{}, temporal.NewNonRetryableApplicationError("permission denied", activities.ErrTypePermission, nil)
				}
				return activities.DisposeResult{Outcome: "moved", To: "/done/in/a.bin"}, nil
			})
			in := input()
			in.Options.OnSuccess = config.Action{Kind: "move", Dir: "/done"}
			in.Options.OnFailure = config.Action{Kind: "move", Dir: "/failed"}
			f.env.ExecuteWorkflow(Name, in)
			if err := f.env.GetWorkflowError(); (err == nil) != tc.ok {
				t.Fatalf("workflow error %v", err)
			}
			wantDir := "/done"
			if !tc.ok {
				wantDir = "/failed"
			}
			if len(got) != 1 || got[0].Action != "move" || got[0].Dir != wantDir || got[0].RemotePath != "/in/a.bin" || got[0].Size != 10 {
				t.Fatalf("dispose calls %+v", got)
			}
			if last := f.statuses[len(f.statuses)-1]; last != tc.want {
				t.Fatalf("last audit event %s, want %s (trail %v)", last, tc.want, f.statuses)
			}
		})
	}
}
