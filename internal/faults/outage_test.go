package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

const outage = 30 * time.Second

// patient retries like the defaults do (1 s doubling to a minute), so a 30 s outage is ridden out.
func patient(c *config.Config) {
	c.Transfer.RetryInterval = config.Duration(time.Second)
	c.Transfer.MaxAttempts = 8
}

// succeeded counts the jobs whose audit row says SUCCEEDED.
func (s *suite) succeeded() int {
	var n int
	_ = s.store.Pool().QueryRow(s.ctx, `SELECT count(*) FROM jobs WHERE status = 'SUCCEEDED'`).Scan(&n)
	return n
}

// batchThroughOutage publishes n jobs, takes server down for 30 s once a few have succeeded, and
// balances the ledger after it is back.
func batchThroughOutage(t *testing.T, server string) {
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache, SFTPReadRate: 8 << 20, PersistTemporal: server == devstack.ServerTemporal}, patient)
	s.worker(s.cfg)
	s.bridge(s.cfg)
	const n = 12
	for i := range n {
		s.job(fmt.Sprintf("job-%02d", i), fmt.Sprintf("in/batch/f%02d.bin", i), 2<<20, uint64(i))
	}
	s.waitFor("the first jobs done", time.Minute, func() bool { return s.succeeded() >= 3 })
	before := s.succeeded()
	done := make(chan error, 1)
	go func() { done <- s.env.Stack.Restart(s.ctx, server, outage) }()
	time.Sleep(outage / 3)
	if server == devstack.ServerTemporal {
		// Jobs published while Temporal is down wait on the topic: the bridge must not commit them.
		for i := n; i < n+6; i++ {
			s.job(fmt.Sprintf("job-%02d", i), fmt.Sprintf("in/batch/f%02d.bin", i), 2<<20, uint64(i))
		}
		kc, err := kafkaops.Dial(s.cfg.Kafka.Brokers, "fault-test")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		lag, err := kc.ConsumerLag(s.cfg.Kafka.JobsTopic, s.cfg.Kafka.Group)
		kc.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("consumer lag while Temporal is down: %d", lag.Total)
		if lag.Total < 6 {
			t.Fatalf("the bridge committed messages it could not start: lag %d, want at least 6", lag.Total)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("restart %s: %v", server, err)
	}
	t.Logf("%s was down for %s; %d of %d jobs had succeeded before", server, outage, before, len(s.want))
	s.wait(4 * time.Minute)
	s.ledger()
}

// TestPostgresDownDuringBatch (scenario 6): audit writes retry; no row lost or doubled.
func TestPostgresDownDuringBatch(t *testing.T) { batchThroughOutage(t, devstack.ServerPostgres) }

// TestS3DownDuringBatch (scenario 7): uploads retry and complete.
func TestS3DownDuringBatch(t *testing.T) { batchThroughOutage(t, devstack.ServerS3) }

// TestTemporalDownDuringBatch (scenario 8): the bridge stops committing and resumes; no message lost.
func TestTemporalDownDuringBatch(t *testing.T) { batchThroughOutage(t, devstack.ServerTemporal) }

// TestStagingDiskFull (scenario 12): the staging filesystem (a small tmpfs) cannot hold the file:
// the job fails cleanly with that reason and the partial file is removed; with space back, the
// same file goes through.
func TestStagingDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs for staging needs root")
	}
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, func(c *config.Config) { c.Transfer.MaxAttempts = 2 })
	mnt := filepath.Join(s.env.Dir, "small")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	s.cfg.Transfer.StagingDir = filepath.Join(mnt, "staging")
	s.cfg.Transfer.CompletedDir = filepath.Join(mnt, "completed")
	s.worker(s.cfg)
	s.bridge(s.cfg)
	sum := s.env.WriteFile(t, "in/large.bin", 12<<20, 4)
	s.expectDead("full", "download", activities.ErrTypeStagingFull)
	s.publishRaw([]byte("full"), fmt.Appendf(nil, `{"id":"full","remote_path":"/in/large.bin","md5":%q}`, sum))
	s.waitFor("the job to fail", time.Minute, func() bool {
		j, err := s.store.Job(s.ctx, "full")
		return err == nil && j.Status == audit.StatusDeadLettered
	})
	j, _ := s.store.Job(s.ctx, "full")
	t.Logf("with an 8 MiB staging disk: %s: %s", j.Status, deref(j.Error))
	left, _ := filepath.Glob(filepath.Join(s.cfg.Transfer.StagingDir, "*"))
	if len(left) != 0 {
		t.Fatalf("partial files left in staging: %v", left)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v %s", err, out)
	}
	s.mu.Lock()
	s.want["again"] = want{key: "in/large.bin", md5: sum}
	s.mu.Unlock()
	s.publishRaw([]byte("again"), fmt.Appendf(nil, `{"id":"again","remote_path":"/in/large.bin","md5":%q}`, sum))
	s.wait(time.Minute)
	s.ledger()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
