// Package activities holds the activities of the FileTransfer workflow. Each is a method on Transfer,
// whose fields are the clients it needs, built once by the worker. Activities that touch the staging
// or completed folders run on the host-specific task queue of the worker that holds them.
package activities

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

// Error types: the ApplicationError type names the workflow, the audit trail and the dashboard
// use. The ones marked final are non-retryable.
const (
	ErrTypeRemoteNotFound   = "RemoteNotFound"   // final
	ErrTypePermission       = "PermissionDenied" // final
	ErrTypeHostKey          = "HostKeyMismatch"  // final
	ErrTypeAuth             = "AuthRefused"      // final
	ErrTypeNotRegular       = "NotARegularFile"  // final
	ErrTypeSizeMismatch     = "SizeMismatch"     // final
	ErrTypeRemoteChanged    = "RemoteChanged"    // retried when it changed during the attempt, final when its size differs at the start
	ErrTypeTooYoung         = "FileTooYoung"     // retried after the remaining age
	ErrTypeChecksumMismatch = "ChecksumMismatch" // final for the attempt; the workflow re-downloads
	ErrTypeStagingMissing   = "StagingMissing"   // final for the attempt; the workflow re-downloads
	ErrTypeStagingFull      = "StagingFull"      // retried: the partial file is removed, space may return
	ErrTypeStepTimeout      = "StepTimeout"      // retried: a step of Small ran out of the attempt's time
	ErrTypeTooLarge         = "FileTooLarge"     // final: larger than transfer.max_file_size
)

// Transfer carries the clients of every activity. Fields a worker does not need may be nil: the
// shared-queue worker has no staging folder, the host worker no Kafka producer. Methods are safe
// for concurrent use.
type Transfer struct {
	// Sources are the SFTP sources jobs read from, by name ("default" for the [sftp] section).
	Sources map[string]*Source
	S3      *s3.Client
	// Bucket receives the uploads.
	Bucket string
	// PartSize and Concurrency tune the multipart upload.
	PartSize    int64
	Concurrency int
	Audit       *audit.Store
	// Producer publishes dead letters to DLQTopic and done events to DoneTopic.
	Producer  sarama.SyncProducer
	DLQTopic  string
	DoneTopic string
	// Staging holds <job id>.part files; Completed holds promoted files under their keys.
	Staging   *os.Root
	Completed *os.Root
	// HostID and HostQueue name this worker's host and its task queue.
	HostID    string
	HostQueue string
	// Connections is the number of SFTP connections a download opens.
	Connections int
	// ChunkSize is the read buffer per connection (memory per download = Connections × ChunkSize).
	ChunkSize int
	// StallTimeout ends a download attempt that received no bytes for this long (0: 30s, <0: never).
	StallTimeout time.Duration
	// ReadersPerConnection is how many ranges each SFTP connection reads at once (0: 2).
	ReadersPerConnection int
	// SyncEvery is how often Download syncs the staging file (0: the heartbeat interval, at most 1s).
	SyncEvery time.Duration
	// MaxFileSize refuses larger remote files at stat and at download (0: no limit).
	MaxFileSize int64
	// KeepCompleted keeps a job's completed file this long after its upload was verified; 0
	// removes it at once.
	KeepCompleted time.Duration
	// SmallMemory bounds the bytes of small files (Small) held in memory at once (0: 256 MiB).
	SmallMemory int64
	smallOnce   sync.Once
	small       smallBudget
	// Heartbeat is how often the long steps record a heartbeat.
	Heartbeat time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

func (a *Transfer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Transfer) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.Default()
	}
	return a.Logger
}

// log returns the logger for one job: every line carries the job ID and, inside an activity, the
// workflow ID, the activity and its attempt.
func (a *Transfer) log(ctx context.Context, jobID string) *slog.Logger {
	l := a.logger().With("job_id", jobID)
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		l = l.With("workflow_id", info.WorkflowExecution.ID, "activity", info.ActivityType.Name, "attempt", info.Attempt)
	}
	return l
}

// classify turns SFTP and SSH errors into Temporal errors: the ones a retry cannot fix become
// non-retryable with a type name; the rest stay retryable.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sftp.StatusError
	switch {
	case errors.Is(err, sftpdial.ErrHostKey):
		return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), ErrTypeHostKey, nil)
	case errors.Is(err, sftpdial.ErrAuth):
		return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), ErrTypeAuth, nil)
	case notExist(err):
		return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), ErrTypeRemoteNotFound, nil)
	case errors.Is(err, fs.ErrPermission), errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxPermissionDenied:
		return temporal.NewNonRetryableApplicationError(op+": "+err.Error(), ErrTypePermission, nil)
	}
	return err
}

// notExist says the remote file is not there, as the SFTP client or the local filesystem says it.
func notExist(err error) bool {
	var se *sftp.StatusError
	return errors.Is(err, fs.ErrNotExist) || errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxNoSuchFile
}

func final(typ, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, typ, nil)
}

// retryable is an error of type typ that a later attempt may not meet.
func retryable(typ, msg string) error {
	return temporal.NewApplicationError(msg, typ)
}
