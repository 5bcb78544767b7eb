package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
)

func events(at time.Time) []audit.Event {
	base := audit.Event{JobID: "j1", WorkflowID: "file-j1", RunID: "r1", RemotePath: "/in/a.bin", S3Bucket: "b", S3Key: "in/a.bin"}
	var evs []audit.Event
	for i, s := range []struct{ step, outcome, status string }{{"queued", "started", audit.StatusQueued},
		{"stat", "succeeded", audit.StatusQueued}, {"download", "started", audit.StatusDownloading}} {
		ev := base
		ev.Seq, ev.Step, ev.Outcome, ev.Status, ev.At = i+1, s.step, s.outcome, s.status, at.Add(time.Duration(i)*time.Millisecond)
		evs = append(evs, ev)
	}
	evs[1].SizeKnown, evs[1].Size = true, 10
	return evs
}

// The events of one workflow task land together, in order, once: a retried write adds nothing and
// does not move the job back.
func TestRecordAllWritesOnce(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)
	evs := events(at)
	added, err := s.RecordAll(ctx, evs)
	if err != nil || len(added) != 3 {
		t.Fatalf("first write: %d added, %v", len(added), err)
	}
	done := evs[2]
	done.Seq, done.Step, done.Outcome, done.Status, done.Finished = 4, "upload", "succeeded", audit.StatusSucceeded, true
	if added, err := s.RecordAll(ctx, []audit.Event{done}); err != nil || len(added) != 1 {
		t.Fatalf("second write: %d added, %v", len(added), err)
	}
	// the first batch again, as a retried local activity would write it
	if added, err := s.RecordAll(ctx, evs); err != nil || len(added) != 0 {
		t.Fatalf("retried write: %d added, %v", len(added), err)
	}
	j, err := s.Job(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != audit.StatusSucceeded || j.Size == nil || *j.Size != 10 {
		t.Fatalf("job %+v", j)
	}
	got, err := s.Events(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Step != "queued" || got[3].Step != "upload" {
		t.Fatalf("events %+v", got)
	}
}

// A batch that fails part-way leaves nothing behind.
func TestRecordAllIsOneTransaction(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	evs := events(time.Now().UTC())
	evs[2].Step = "" // refused before anything is sent
	if _, err := s.RecordAll(ctx, evs); err == nil {
		t.Fatal("an event without a step was accepted")
	}
	evs = events(time.Now().UTC())
	evs[2].Status = "NOT_A_STATUS" // refused by the jobs table's check, after the first two rows
	if _, err := s.RecordAll(ctx, evs); err == nil {
		t.Fatal("an unknown status was accepted")
	}
	if got, err := s.Events(ctx, "j1"); err != nil || len(got) != 0 {
		t.Fatalf("after a failed batch: %d events, %v", len(got), err)
	}
}
