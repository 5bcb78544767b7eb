package audit

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kafkasync/kafkasync/internal/job"
)

// RecordAll writes the events of one run, in order, in one transaction of one round trip: one
// upsert of the job row, folded from the events as writing them one by one would leave it, and
// one insert of their rows. A flush whose last event was written before is a retry of it: it
// changes nothing. added lists the events new here.
func (s *Store) RecordAll(ctx context.Context, evs []Event) (added []Event, err error) {
	return s.record(ctx, evs, true)
}

// RecordAfter writes events that leave their job's row as it is, such as a finished job's done
// event: one insert, idempotent as RecordAll's. added lists the events new here.
func (s *Store) RecordAfter(ctx context.Context, evs []Event) (added []Event, err error) {
	return s.record(ctx, evs, false)
}

// record writes the events of one run, with the job row they leave when moveJob, in one
// transaction, shared with other runs' writes under load.
func (s *Store) record(ctx context.Context, evs []Event, moveJob bool) (added []Event, err error) {
	if err := checkRun(evs); err != nil || len(evs) == 0 {
		return nil, err
	}
	w := &write{ctx: ctx, evs: evs, moveJob: moveJob, done: make(chan struct{})}
	if err := s.submit(w); err != nil {
		return nil, err
	}
	return w.added, nil
}

// checkRun accepts events of one run, each with a job id, a step and a known status.
func checkRun(evs []Event) error {
	for _, ev := range evs {
		if ev.JobID == "" || ev.Step == "" || !slices.Contains(Statuses, ev.Status) {
			return errors.New("audit: event needs job id, step and a known status")
		}
		if ev.JobID != evs[0].JobID || ev.RunID != evs[0].RunID {
			return errors.New("audit: events of one run only")
		}
	}
	return nil
}

// queueEvents adds the insert of the events' rows to b; *added collects those not written before.
func queueEvents(b *pgx.Batch, evs []Event, added *[]Event) {
	n := len(evs)
	seqs, steps, outcomes := make([]int32, n), make([]string, n), make([]string, n)
	details, errs, ats := make([]*string, n), make([]*string, n), make([]time.Time, n)
	for i, ev := range evs {
		seqs[i], steps[i], outcomes[i] = int32(ev.Seq), ev.Step, ev.Outcome
		details[i], errs[i], ats[i] = nullStr(ev.Detail), nullStr(ev.Error), ev.At
	}
	b.Queue(qRecordEvents, evs[0].JobID, evs[0].RunID, seqs, steps, outcomes, details, errs, ats).Query(func(rows pgx.Rows) error {
		seq := int32(0)
		_, err := pgx.ForEachRow(rows, []any{&seq}, func() error {
			if i := slices.Index(seqs, seq); i >= 0 {
				*added = append(*added, evs[i])
			}
			return nil
		})
		return err
	})
}

// jobRow is the jobs row as events leave it.
type jobRow struct {
	jobID, status, remotePath, workflowID, runID, source string
	md5Expected, md5Actual, bucket, key, host, err       *string
	size                                                 *int64
	attempts                                             int
	bytesPerSec                                          *float64
	createdAt, updatedAt                                 time.Time
	startedAt, finishedAt                                *time.Time
}

// rowUpdate is how a flush moves an existing job's error and finished time: set to a value (a
// success clears the error), or kept; a finished time not set is kept only while the status
// stays firstStatus, the flush's first event's.
type rowUpdate struct {
	errSet, finishedSet bool
	err                 *string
	finished            *time.Time
	firstStatus         string
}

// newRow is the row a job's first event makes.
func newRow(ev Event) jobRow {
	r := jobRow{jobID: ev.JobID, source: job.SourceName(ev.Source), createdAt: ev.At}
	r.apply(ev)
	r.err, r.startedAt, r.finishedAt = nullStr(ev.Error), when(ev.Started, ev.At), when(ev.Finished, ev.At)
	return r
}

// apply moves the row by one later event.
func (r *jobRow) apply(ev Event) {
	before := r.status
	r.status, r.remotePath, r.workflowID, r.runID, r.updatedAt = ev.Status, ev.RemotePath, ev.WorkflowID, ev.RunID, ev.At
	if ev.SizeKnown {
		r.size = &ev.Size
	}
	for _, f := range []struct {
		to *(*string)
		v  string
	}{{&r.md5Expected, ev.MD5Expected}, {&r.md5Actual, ev.MD5Actual}, {&r.bucket, ev.S3Bucket}, {&r.key, ev.S3Key}, {&r.host, ev.Host}} {
		if f.v != "" {
			*f.to = nullStr(f.v)
		}
	}
	r.attempts = max(r.attempts, ev.Attempts)
	if ev.BytesPerSec > 0 {
		r.bytesPerSec = &ev.BytesPerSec
	}
	switch {
	case ev.Status == StatusSucceeded:
		r.err = nil
	case ev.Error != "":
		r.err = &ev.Error
	}
	if r.startedAt == nil {
		r.startedAt = when(ev.Started, ev.At)
	}
	if ev.Finished || ev.Status != before {
		r.finishedAt = when(ev.Finished, ev.At)
	}
}

// foldEvents returns the row the events make for a new job, and how they move an existing one.
func foldEvents(evs []Event) (jobRow, rowUpdate) {
	row := newRow(evs[0])
	for _, ev := range evs[1:] {
		row.apply(ev)
	}
	upd := rowUpdate{firstStatus: evs[0].Status}
	for i := len(evs) - 1; i >= 0 && !upd.errSet; i-- {
		switch ev := evs[i]; {
		case ev.Status == StatusSucceeded:
			upd.errSet = true
		case ev.Error != "":
			upd.errSet, upd.err = true, &ev.Error
		}
	}
	for i := len(evs) - 1; i >= 0 && !upd.finishedSet; i-- {
		if evs[i].Finished || i > 0 && evs[i].Status != evs[i-1].Status {
			upd.finishedSet, upd.finished = true, when(evs[i].Finished, evs[i].At)
		}
	}
	return row, upd
}

func when(ok bool, at time.Time) *time.Time {
	if !ok {
		return nil
	}
	return &at
}
