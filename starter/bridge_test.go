package starter_test

// The bridge runs against the Apache Kafka broker (bin/kafka); Temporal is a stand-in.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/client"

	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workflows"
)

// flakyTemporal refuses the first `fail` starts, as an unreachable Temporal would, then accepts.
type flakyTemporal struct {
	mu    sync.Mutex
	fail  int
	calls int
	ids   []string
	by    []string // the SubmittedBy of each start
}

func (f *flakyTemporal) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fail {
		return nil, errors.New("connection refused")
	}
	f.ids = append(f.ids, o.ID+"|"+args[0].(workflows.Input).Job.RemotePath)
	f.by = append(f.by, args[0].(workflows.Input).SubmittedBy)
	return nil, nil
}

func (f *flakyTemporal) snapshot() (int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, append([]string(nil), f.ids...)
}

// committed returns the group's committed offset of partition 0 (-1: none).
func committed(t *testing.T, admin sarama.ClusterAdmin) int64 {
	res, err := admin.ListConsumerGroupOffsets("g", map[string][]int32{"jobs": {0}})
	if err != nil {
		return -1 // the group has not committed anything yet
	}
	if b := res.GetBlock("jobs", 0); b != nil {
		return b.Offset
	}
	return -1
}

func TestBridgeCommitsOnlyAfterTemporalAccepted(t *testing.T) {
	k := testenv.StartKafka(t, devstack.KafkaOptions{Kind: devstack.KafkaApache, Partitions: 1, Topics: []string{"jobs", "jobs.dlq"}})
	sc := sarama.NewConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	admin, err := sarama.NewClusterAdmin(k.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	prod, err := sarama.NewSyncProducer(k.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "jobs", Partition: 0, Key: sarama.StringEncoder("j1"),
		Value: sarama.StringEncoder(`{"remote_path":"/a.bin"}`), Headers: []sarama.RecordHeader{{Key: []byte(job.HeaderSubmittedBy), Value: []byte("account:alice")}}}); err != nil {
		t.Fatal(err)
	}

	tmp := &flakyTemporal{fail: 3}
	b := &starter.Bridge{Temporal: tmp, TaskQueue: "q", DLQ: prod, DLQTopic: "jobs.dlq",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Backoff: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- starter.Run(ctx, k.Brokers, "g", "jobs", starter.ConsumerConfig("t", time.Second), b) }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(30 * time.Second)
	sawRefusalUncommitted := false
	for time.Now().Before(deadline) {
		calls, ids := tmp.snapshot()
		off := committed(t, admin)
		if calls >= 2 && len(ids) == 0 {
			if off != -1 {
				t.Fatalf("offset %d committed while Temporal refused the start", off)
			}
			sawRefusalUncommitted = true
		}
		if len(ids) == 1 && off == 1 {
			if ids[0] != "file-j1|/a.bin" {
				t.Fatalf("started %v", ids)
			}
			if tmp.by[0] != "account:alice" {
				t.Fatalf("submitted by %q, the message's header says account:alice", tmp.by[0])
			}
			if !sawRefusalUncommitted {
				t.Fatal("never observed the refusals")
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	calls, ids := tmp.snapshot()
	t.Fatalf("after 30s: %d calls, started %v, committed %d", calls, ids, committed(t, admin))
}
