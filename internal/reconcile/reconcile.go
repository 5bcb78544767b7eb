// Package reconcile keeps the ledger of a window: every job message the bridge consumed is
// archived (a SUCCEEDED job whose object is in the bucket with the job's MD5), dead-lettered, in
// flight, or a redelivery of one of those, and every SUCCEEDED job's object is where its row says.
// Whatever does not balance is listed as a difference.
package reconcile

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/job"
)

// Kinds of difference.
const (
	ObjectMissing           = "object_missing"             // a SUCCEEDED row whose object is gone
	MD5Differs              = "md5_differs"                // the object's stored MD5 is not the job's
	MessageWithoutWorkflow  = "message_without_workflow"   // a consumed message that started nothing and was not dead-lettered
	DeadLetterWithoutJob    = "dead_letter_without_job"    // a workflow's dead letter whose job has no row
	FailedWithoutDeadLetter = "failed_without_dead_letter" // a job that failed for good and could not publish its dead letter
)

// Difference is one thing the ledger does not account for. A message's difference names its
// place on the topic; a dead letter's, its place on the dead-letter topic.
type Difference struct {
	Kind      string `json:"kind"`
	JobID     string `json:"job_id"`
	Bucket    string `json:"bucket,omitempty"`
	Key       string `json:"key,omitempty"`
	Topic     string `json:"topic,omitempty"`
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
	Detail    string `json:"detail"`
}

// Line is the ledger of one topic and source: Consumed = Archived + DeadLettered + InFlight +
// Redelivered + Differing.
type Line struct {
	Topic        string `json:"topic"`
	Source       string `json:"source"` // "" for messages that name no valid source
	Consumed     int64  `json:"consumed"`
	Archived     int64  `json:"archived"`
	DeadLettered int64  `json:"dead_lettered"`
	InFlight     int64  `json:"in_flight"`
	Redelivered  int64  `json:"redelivered"` // a later message of a job already counted
	Differing    int64  `json:"differing"`   // listed among the differences
}

// Report is the ledger of a window: the jobs created in it by status, the archived ones whose
// objects were checked, the consumed messages by topic and source, and every difference found.
type Report struct {
	Since       time.Time        `json:"since"`
	Statuses    map[string]int64 `json:"statuses"`
	Checked     int              `json:"checked"`
	Ledger      []Line           `json:"ledger"`
	Differences []Difference     `json:"differences"`
}

// Message is a job message as the bridge consumed it.
type Message struct {
	Topic      string
	Partition  int32
	Offset     int64
	Key, Value []byte
}

// Messages calls f for each job message consumed with a timestamp at or after since.
type Messages func(ctx context.Context, since time.Time, f func(Message) error) error

// Options are what a reconciliation reads.
type Options struct {
	Store *audit.Store
	S3    *s3.Client
	// Messages are the consumed job messages; nil: the ledger of messages is not kept.
	Messages Messages
	// Policy parses a message as the bridge does, to find its job.
	Policy job.Policy
	// Running reports whether a job's workflow is open (its first audit row may not be written
	// yet); nil: no workflow is.
	Running func(ctx context.Context, workflowID string) (bool, error)
}

// deadLettersListed bounds the dead letters without a job one report lists.
const deadLettersListed = 1000

// Check reconciles the window that starts at since.
func Check(ctx context.Context, o Options, since time.Time) (Report, error) {
	r := Report{Since: since, Ledger: []Line{}, Differences: []Difference{}}
	var err error
	if r.Statuses, err = o.Store.CountSince(ctx, since); err != nil {
		return r, err
	}
	differing, err := checkObjects(ctx, o, since, &r)
	if err != nil {
		return r, err
	}
	if o.Messages != nil {
		l := &ledger{o: o, differing: differing, lines: map[[2]string]*Line{}, seen: map[string]bool{}}
		if err := l.read(ctx, since); err != nil {
			return r, err
		}
		r.Ledger, r.Differences = l.sorted(), append(r.Differences, l.diffs...)
	}
	if err := deadLettersWithoutJob(ctx, o.Store, since, &r); err != nil {
		return r, err
	}
	sort.SliceStable(r.Differences, func(i, k int) bool {
		a, b := r.Differences[i], r.Differences[k]
		return a.Kind < b.Kind || a.Kind == b.Kind && a.JobID < b.JobID
	})
	return r, nil
}

// deadLettersWithoutJob lists the workflows' dead letters since since whose job has no row.
func deadLettersWithoutJob(ctx context.Context, store *audit.Store, since time.Time, r *Report) error {
	dls, err := store.DeadLettersWithoutJob(ctx, since, deadLettersListed)
	if err != nil {
		return err
	}
	for _, d := range dls {
		p, off := d.Partition, d.Offset
		r.Differences = append(r.Differences, Difference{Kind: DeadLetterWithoutJob, JobID: deref(d.JobID), Topic: d.Topic,
			Partition: &p, Offset: &off, Detail: fmt.Sprintf("a dead letter at stage %s names job %s, which has no audit row", d.Stage, deref(d.JobID))})
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
