package audit

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Concurrent runs' audit writes share transactions: a write that finds groupWriters batches in
// flight waits for one of them to end and goes with the writes queued meanwhile, in one batch of
// one implicit transaction. Under load that is one commit, one WAL flush and one round trip for
// many jobs; alone, a write goes at once. One lock wait holds up the writes of its batch.
const (
	groupWriters = 2
	groupMax     = 64
	// groupTimeout bounds one batch; a caller gives up earlier with its own context.
	groupTimeout = 30 * time.Second
)

// qLockJob serialises the writes of one job: record_job's check that the flush was not written
// before reads its statement's snapshot, so a write that started before another of the same job
// committed would otherwise overwrite the newer row with its older one.
const qLockJob = `SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))`

// write is one caller's events, and what became of them.
type write struct {
	ctx     context.Context
	evs     []Event
	moveJob bool
	added   []Event
	err     error
	done    chan struct{}
}

// group queues writes for its writers; batches and sent count what went to PostgreSQL.
type group struct {
	mu            sync.Mutex
	queue         []*write
	writers       int
	batches, sent int
}

// submit queues w, starts a writer if fewer than groupWriters run, and waits for w's outcome or
// the end of its caller's context. A caller that gives up before its write is sent leaves it
// unsent; after, to land or not: writes are idempotent.
func (s *Store) submit(w *write) error {
	g := &s.group
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if g.writers < groupWriters {
		g.writers++
		go s.drain()
	}
	g.mu.Unlock()
	select {
	case <-w.done:
		return w.err
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// drain writes queued batches until the queue is empty.
func (s *Store) drain() {
	g := &s.group
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.writers--
			g.mu.Unlock()
			return
		}
		n := min(len(g.queue), groupMax)
		batch := slices.Clone(g.queue[:n])
		g.queue = slices.Delete(g.queue, 0, n)
		g.mu.Unlock()
		batch = slices.DeleteFunc(batch, abandoned)
		// Jobs in the same order in every batch: two batches never wait for each other's locks.
		slices.SortStableFunc(batch, func(a, b *write) int { return cmp.Compare(a.evs[0].JobID, b.evs[0].JobID) })
		if len(batch) > 0 {
			s.writeGroup(batch)
		}
	}
}

// abandoned ends a write whose caller gave up (it retries, or was cancelled) without sending it.
func abandoned(w *write) bool {
	if w.err = w.ctx.Err(); w.err != nil {
		close(w.done)
	}
	return w.err != nil
}

// writeGroup writes the batch in one transaction. When PostgreSQL refuses one of its writes (bad
// data, a constraint, a deadlock) and it held more than one, each is written on its own, so one
// write's error is its own; any other failure (the server away, slow or shutting down) is every
// write's.
func (s *Store) writeGroup(batch []*write) {
	err := s.send(batch)
	if refusedWrite(err) && len(batch) > 1 {
		for _, w := range batch {
			if !abandoned(w) {
				w.added = nil
				w.err = s.send([]*write{w})
				w.finish()
			}
		}
		return
	}
	for _, w := range batch {
		w.err = err
		w.finish()
	}
}

// refusedWrite reports PostgreSQL's refusal of a write's data: a data exception (class 22), an
// integrity constraint (23) or a rolled-back transaction (40: a deadlock, a serialization failure).
func refusedWrite(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23") || strings.HasPrefix(pg.Code, "40"))
}

// finish hands the write's outcome to its caller, the added events in their order.
func (w *write) finish() {
	if w.err != nil {
		w.added = nil
	}
	slices.SortFunc(w.added, func(a, b Event) int { return a.Seq - b.Seq })
	close(w.done)
}

// send writes the writes' statements as one batch. One batch ends in one Sync, so PostgreSQL runs
// it as one implicit transaction: all of it or none, in one round trip.
func (s *Store) send(ws []*write) error {
	s.group.mu.Lock()
	s.group.batches++
	s.group.sent += len(ws)
	s.group.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	b := &pgx.Batch{}
	for _, w := range ws {
		if w.moveJob {
			row, upd := foldEvents(w.evs)
			b.Queue(qLockJob, row.jobID)
			b.Queue(qRecordJob, row.jobID, row.status, row.remotePath, row.size, row.md5Expected, row.md5Actual, row.bucket,
				row.key, row.workflowID, row.runID, row.host, row.attempts, row.bytesPerSec, row.err, row.createdAt,
				row.startedAt, row.finishedAt, row.updatedAt, row.source, w.evs[len(w.evs)-1].Seq,
				upd.errSet, upd.err, upd.finishedSet, upd.finished, upd.firstStatus).Exec(func(pgconn.CommandTag) error { return nil })
		}
		queueEvents(b, w.evs, &w.added)
	}
	return s.pool.SendBatch(ctx, b).Close()
}
