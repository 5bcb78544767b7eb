package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/internal/testproc"
)

// Two bridges and three workers, each worker with its own staging folder and host identity, take
// 1,000 jobs (KAFKASYNC_SCALE_JOBS, e.g. 10000) over 6 partitions. One worker is SIGKILLed midway
// and not restarted: its host-bound jobs move to the others. Every job is archived exactly once, and
// the SFTP server never sees more sessions at once than sftp.max_connections allows across the
// fleet.
func TestScaleTwoBridgesThreeWorkers(t *testing.T) {
	const (
		maxConns = 6
		maxJobs  = 4
		large    = 20 // files of 32 MiB among the jobs, spread evenly
	)
	jobs := 1000
	if v := os.Getenv("KAFKASYNC_SCALE_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("KAFKASYNC_SCALE_JOBS=%q: want a number of at least 100", v)
		}
		jobs = n
	}
	// Ten jobs a second at the least, on top of the scenario's 8 minutes.
	budget := time.Duration(jobs/10) * time.Second
	s := startFor(t, 8*time.Minute+budget, testenv.Options{Kafka: devstack.KafkaApache, Partitions: 6}, func(c *config.Config) {
		c.Transfer.MinAge = 0
		c.Transfer.Connections = 2
		c.SFTP.MaxConnections, c.SFTP.MaxJobs = maxConns, maxJobs
		// Each job's host steps wait this long for a dead host before moving.
		c.Transfer.HostTimeout = config.Duration(15 * time.Second)
		c.Transfer.HeartbeatTimeout = config.Duration(5 * time.Second)
		c.Log.Level = "warn"
	})
	srv := s.env.Stack.SFTP.Server
	hosts := []string{"host-a", "host-b", "host-c"}
	procs := map[string]*testproc.Proc{}
	for _, h := range hosts {
		cfg := s.cfg
		cfg.Transfer.HostID = h
		cfg.Transfer.StagingDir = filepath.Join(s.env.Dir, h, "staging")
		cfg.Transfer.CompletedDir = filepath.Join(s.env.Dir, h, "completed")
		if h != "host-b" {
			s.staging = append(s.staging, cfg.Transfer.StagingDir, cfg.Transfer.CompletedDir)
		}
		procs[h] = s.worker(cfg)
	}
	s.bridge(s.cfg)
	s.bridge(s.cfg)

	// Mostly small files (one local activity each), twenty larger ones (four activities on the
	// claiming host's queue), so transfers are in flight when the worker dies.
	srv.ResetPeak()
	start := time.Now()
	for i := range jobs {
		size := int64(16<<10 + (i%7)*24<<10)
		if i%(jobs/large) == 0 {
			size = 32 << 20
		}
		s.job(fmt.Sprintf("scale-%04d", i), fmt.Sprintf("in/scale/%02d/f%04d.bin", i%20, i), size, uint64(i))
	}
	t.Logf("published %d jobs over 6 partitions in %s", jobs, time.Since(start).Round(time.Millisecond))

	s.waitFor("a third of the jobs", 2*time.Minute+budget/3, func() bool { return s.succeeded() >= jobs/3 })
	// Then the moment host-b is downloading a large job, as Temporal sees it (the audit rows lag
	// behind by a workflow task): a Download started on the host queue of host-b, which only
	// host-b's worker polls. A small job is gone in a few milliseconds.
	var caught string
	s.waitFor("host-b to be downloading a large job", time.Minute+budget/2, func() bool {
		rows, err := s.store.Pool().Query(s.ctx, `SELECT job_id FROM jobs j WHERE size_bytes >= 32 << 20 AND status <> 'SUCCEEDED'
			AND EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.job_id AND e.step = 'download' AND e.outcome = 'started'
				AND e.detail LIKE '% on host-b%')`)
		if err != nil {
			return false
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return false
		}
		for _, id := range ids {
			d, err := s.c.DescribeWorkflowExecution(s.ctx, job.Job{ID: id}.WorkflowID(), "")
			if err != nil {
				continue
			}
			for _, pa := range d.GetPendingActivities() {
				if pa.GetActivityType().GetName() == "Download" && pa.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
					caught = id
					return true
				}
			}
		}
		return false
	})
	killedAt := s.succeeded()
	beforeSessions, beforeFiles := srv.PeakSessions(), srv.PeakFilesRead()
	procs["host-b"].Kill()
	t.Logf("SIGKILLed host-b's worker after %s, with %d of %d jobs archived, while it downloaded %s", time.Since(start).Round(time.Millisecond), killedAt, jobs, caught)
	// The killed worker's slots are free once PostgreSQL drops its session, and its connections
	// and open files once the SFTP server reads the end of them: the two happen in either order,
	// so for a moment the server may count both the dead worker's files and a live worker's. The
	// limits are checked before the kill and from a second after it.
	time.Sleep(time.Second)
	srv.ResetPeak()

	s.waitFor("every job", 4*time.Minute+budget, func() bool { return s.succeeded() == jobs })
	drain := time.Since(start)

	var moved, onB, onA, onC int
	pool := s.store.Pool()
	if err := pool.QueryRow(s.ctx, `SELECT
		count(*) FILTER (WHERE host <> 'host-b' AND EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.job_id
			AND e.step = 'download' AND e.outcome = 'started' AND e.detail LIKE '% on host-b%')),
		count(*) FILTER (WHERE host = 'host-b'), count(*) FILTER (WHERE host = 'host-a'), count(*) FILTER (WHERE host = 'host-c')
		FROM jobs j WHERE status = 'SUCCEEDED'`).Scan(&moved, &onB, &onA, &onC); err != nil {
		t.Fatal(err)
	}
	s.ledger()
	t.Logf("drained %d jobs in %s (%.1f jobs/s) | archived on host-a %d, host-b %d (before its death), host-c %d | "+
		"%d jobs begun on host-b finished on another host | at once, the SFTP server saw at most %d sessions (limit %d) and %d files being read (job limit %d)",
		jobs, drain.Round(100*time.Millisecond), float64(jobs)/drain.Seconds(), onA, onB, onC, moved, max(beforeSessions, srv.PeakSessions()), maxConns,
		max(beforeFiles, srv.PeakFilesRead()), maxJobs)
	if moved == 0 {
		t.Error("no job of the killed worker moved to another host")
	}
	var caughtHost string
	if err := pool.QueryRow(s.ctx, `SELECT coalesce(host, '') FROM jobs WHERE job_id = $1 AND status = 'SUCCEEDED'`, caught).Scan(&caughtHost); err != nil || caughtHost == "host-b" {
		t.Errorf("%s, downloading on host-b when it was killed, archived on %q (%v)", caught, caughtHost, err)
	}
	if p := max(beforeSessions, srv.PeakSessions()); p > maxConns {
		t.Errorf("the SFTP server saw %d sessions at once, limit %d (%d before the kill)", p, maxConns, beforeSessions)
	}
	if p := max(beforeFiles, srv.PeakFilesRead()); p > maxJobs {
		t.Errorf("the SFTP server saw %d files read at once, job limit %d (%d before the kill)", p, maxJobs, beforeFiles)
	}
}
