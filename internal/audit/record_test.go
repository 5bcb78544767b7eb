package audit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
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
	evs[2].Status = "NOT_A_STATUS" // refused before anything is sent
	if _, err := s.RecordAll(ctx, evs); err == nil {
		t.Fatal("an unknown status was accepted")
	}
	evs = events(time.Now().UTC())
	evs[2].Detail = "a NUL \x00 byte" // refused by PostgreSQL at the event rows, after the job row's upsert
	if _, err := s.RecordAll(ctx, evs); err == nil {
		t.Fatal("a NUL byte in a text column was accepted")
	}
	if _, err := s.Job(ctx, "j1"); err == nil {
		t.Fatal("the job row of a failed batch was kept")
	}
	if got, err := s.Events(ctx, "j1"); err != nil || len(got) != 0 {
		t.Fatalf("after a failed batch: %d events, %v", len(got), err)
	}
}

// A flush of several events leaves the job as writing them one at a time would: for random runs
// of events, the job written one event at a time and the same events in random groups end equal.
func TestRecordAllFoldsLikeOneByOne(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 13))
	statuses := []string{audit.StatusQueued, audit.StatusDownloading, audit.StatusVerifying, audit.StatusUploading,
		audit.StatusSucceeded, audit.StatusFailed, audit.StatusDeadLettered}
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	at := time.Now().UTC().Truncate(time.Microsecond)
	for run := range 60 {
		n := 1 + rng.IntN(9)
		evs := make([]audit.Event, n)
		for i := range evs {
			at = at.Add(time.Millisecond)
			evs[i] = audit.Event{WorkflowID: "file-x", RunID: "r", Seq: i + 1, Step: pick("stat", "download", "upload"),
				Outcome: pick("started", "succeeded", "failed"), Status: statuses[rng.IntN(len(statuses))], At: at,
				RemotePath: "/in/x.bin", Source: pick("", "north"), SizeKnown: rng.IntN(2) == 0, Size: rng.Int64N(100),
				MD5Expected: pick("", "aa"), MD5Actual: pick("", "bb", "cc"), S3Bucket: pick("", "b"), S3Key: pick("", "k1", "k2"),
				Host: pick("", "h1", "h2"), Attempts: rng.IntN(4), Error: pick("", "", "boom", "bang"), Detail: pick("", "d"),
				Started: rng.IntN(3) == 0, Finished: rng.IntN(3) == 0}
			if rng.IntN(2) == 0 {
				evs[i].BytesPerSec = float64(rng.IntN(1000))
			}
		}
		one, grouped := fmt.Sprintf("one-%d", run), fmt.Sprintf("grouped-%d", run)
		for _, ev := range evs {
			ev.JobID = one
			if _, err := s.RecordAll(ctx, []audit.Event{ev}); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < n; {
			k := i + 1 + rng.IntN(n-i)
			group := slices.Clone(evs[i:k])
			for j := range group {
				group[j].JobID = grouped
			}
			added, err := s.RecordAll(ctx, group)
			if err != nil || len(added) != len(group) {
				t.Fatalf("run %d: %d of %d added, %v", run, len(added), len(group), err)
			}
			i = k
		}
		a, errA := s.Job(ctx, one)
		b, errB := s.Job(ctx, grouped)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		b.JobID = a.JobID
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("run %d, events %+v:\none by one %+v\ngrouped    %+v", run, evs, a, b)
		}
	}
}

// An event after a job's end (its done event) is added once and leaves the job row as it was.
func TestRecordAfterLeavesTheJobRow(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)
	evs := events(at)
	evs[2].Status, evs[2].Finished = audit.StatusSucceeded, true
	if _, err := s.RecordAll(ctx, evs); err != nil {
		t.Fatal(err)
	}
	before, err := s.Job(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	done := evs[2]
	done.Seq, done.Step, done.Detail, done.At, done.Finished = 4, "done_event", "done event at t/0/7", at.Add(time.Second), false
	for i, want := range []int{1, 0} { // the second write is a retry
		if added, err := s.RecordAfter(ctx, []audit.Event{done}); err != nil || len(added) != want {
			t.Fatalf("write %d: %d added, want %d; %v", i+1, len(added), want, err)
		}
	}
	after, err := s.Job(ctx, "j1")
	if err != nil || !reflect.DeepEqual(before, after) {
		t.Fatalf("job row moved:\nbefore %+v\nafter  %+v (%v)", before, after, err)
	}
	got, err := s.Events(ctx, "j1")
	if err != nil || len(got) != 4 || got[3].Step != "done_event" {
		t.Fatalf("events %+v, %v", got, err)
	}
	if _, err := s.RecordAfter(ctx, []audit.Event{{JobID: "j1", Step: "done_event", Status: "NOT_A_STATUS"}}); err == nil {
		t.Fatal("an unknown status was accepted")
	}
}

// Many runs writing at once share transactions, and a write PostgreSQL refuses fails alone: the
// others land in full, and it leaves nothing behind.
func TestConcurrentWritesShareTransactionsAndFailAlone(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)
	write := func(n int, refused func(i int) bool) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				evs := events(at)
				for j := range evs {
					evs[j].JobID = fmt.Sprintf("c%d-%03d", n, i)
				}
				if refused(i) {
					evs[2].Detail = "a NUL \x00 byte"
				}
				got, err := s.RecordAll(ctx, evs)
				if err == nil && len(got) != 3 {
					err = fmt.Errorf("%d events added", len(got))
				}
				errs[i] = err
			})
		}
		wg.Wait()
		return errs
	}
	const n = 200
	for i, err := range write(n, func(int) bool { return false }) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	batches, sent := waitIdle(t, s)
	if sent != n || batches > n/2 {
		t.Fatalf("%d writes went in %d batches: they should share them", sent, batches)
	}
	errs := write(n+1, func(i int) bool { return i%10 == 3 })
	for i, err := range errs {
		id := fmt.Sprintf("c%d-%03d", n+1, i)
		evs, qerr := s.Events(ctx, id)
		if qerr != nil {
			t.Fatal(qerr)
		}
		_, jerr := s.Job(ctx, id)
		if i%10 == 3 {
			if err == nil || len(evs) != 0 || !errors.Is(jerr, audit.ErrNotFound) {
				t.Fatalf("%s: refused write returned %v, left %d events and a job row (%v)", id, err, len(evs), jerr)
			}
			continue
		}
		if err != nil || len(evs) != 3 || jerr != nil {
			t.Fatalf("%s: %v, %d events, job %v", id, err, len(evs), jerr)
		}
	}
}

// waitIdle waits until the store's writers have nothing left, and returns what they sent.
func waitIdle(t *testing.T, s *audit.Store) (batches, sent int) {
	t.Helper()
	for range 500 {
		batches, sent, idle := s.GroupCounts()
		if idle {
			return batches, sent
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the audit writers did not become idle within 5 s")
	return 0, 0
}

// A write whose caller has given up is not sent.
func TestAbandonedWriteIsNotSent(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.RecordAll(ctx, events(time.Now().UTC())); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
	if _, sent := waitIdle(t, s); sent != 0 {
		t.Fatalf("%d writes sent for a cancelled one", sent)
	}
	if got, err := s.Events(context.Background(), "j1"); err != nil || len(got) != 0 {
		t.Fatalf("a cancelled write left %d events, %v", len(got), err)
	}
}
