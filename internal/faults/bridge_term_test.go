package faults

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/internal/testproc"
)

// groupMembers returns how many members the bridges' consumer group has now, counting only those
// that own partitions once the group is stable.
func (s *suite) groupMembers(admin sarama.ClusterAdmin) (members, assigned int) {
	s.t.Helper()
	gs, err := admin.DescribeConsumerGroups([]string{s.cfg.Kafka.Group})
	if err != nil || len(gs) != 1 {
		s.t.Fatalf("describe group: %v", err)
	}
	for _, m := range gs[0].Members {
		if a, err := m.GetMemberAssignment(); err == nil && a != nil && len(a.Topics) > 0 && gs[0].State == "Stable" {
			assigned++
		}
	}
	return len(gs[0].Members), assigned
}

// TestBridgeSIGTERMLeavesGroup: a bridge told to stop commits what it handled, leaves the consumer
// group at once (not after the session timeout) and exits 0; the other bridge takes its partitions
// without reading a handled message again.
func TestBridgeSIGTERMLeavesGroup(t *testing.T) {
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache, Partitions: 6}, nil)
	s.worker(s.cfg)
	// The first bridge commits only when it stops: its exit alone must save what it handled.
	slow := s.cfg
	slow.Kafka.CommitInterval = config.Duration(time.Hour)
	b1, b1log := s.run(testproc.Bridge, slow)
	_, b2log := s.run(testproc.Bridge, s.cfg)

	sc := sarama.NewConfig()
	admin, err := sarama.NewClusterAdmin(s.cfg.Kafka.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	s.waitFor("both bridges owning partitions", time.Minute, func() bool { m, a := s.groupMembers(admin); return m == 2 && a == 2 })
	for i := range 12 {
		s.job(fmt.Sprintf("before-%02d", i), fmt.Sprintf("in/term/b%02d.bin", i), 64<<10, uint64(i))
	}
	s.wait(time.Minute)
	handled := countLines(t, b2log, `"msg":"job started"`)
	n1 := countLines(t, b1log, `"msg":"job started"`)
	if n1 == 0 || handled == 0 {
		t.Fatalf("the bridges started %d and %d jobs: both should own partitions", n1, handled)
	}

	t0 := time.Now()
	if err := b1.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s.waitFor("the bridge to exit", 15*time.Second, b1.Exited)
	exited := time.Since(t0)
	s.waitFor("the group down to one member", 5*time.Second, func() bool { m, _ := s.groupMembers(admin); return m == 1 })
	left := time.Since(t0)
	if code := b1.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("bridge exit code %d", code)
	}
	// The session timeout is 10 s: a bridge that vanished without leaving would still be a member.
	if left >= 5*time.Second {
		t.Fatalf("the group lost the member after %s", left)
	}
	for i := range 12 {
		s.job(fmt.Sprintf("after-%02d", i), fmt.Sprintf("in/term/a%02d.bin", i), 64<<10, uint64(100+i))
	}
	s.wait(time.Minute)
	dups := countLines(t, b2log, `"duplicate":true`)
	t.Logf("the leaving bridge had started %d of the first 12 jobs (committing only at exit)", n1)
	t.Logf("SIGTERM: the bridge exited 0 after %s and left the group after %s; the other bridge then started %d jobs, "+
		"%d of them duplicates (messages read again)", exited.Round(10*time.Millisecond), left.Round(10*time.Millisecond),
		countLines(t, b2log, `"msg":"job started"`)-handled, dups)
	if dups != 0 {
		t.Fatalf("the remaining bridge read %d handled messages again: the leaving bridge did not commit", dups)
	}
	s.ledger()
}
