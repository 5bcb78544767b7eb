package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/client"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

// Every consumed message is accounted for: archived, dead-lettered (refused by the bridge or failed
// by its workflow), in flight (with a row, or its workflow running on Temporal before its first
// row), redelivered. A message whose workflow was dropped (terminated on Temporal before it wrote
// a row), a refused message with no dead letter, and a workflow's dead letter whose job has no row
// are each listed; a message after the group's committed offset is not counted.
func TestLedgerAccountsForEveryConsumedMessage(t *testing.T) {
	env, store, s3c := start(t)
	ctx := context.Background()
	cfg := env.Cfg
	topic, group := cfg.Kafka.JobsTopic, "ledger-test"
	kc, err := kafkaops.Dial(cfg.Kafka.Brokers, "ledger-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	since := time.Now().Add(-time.Second)

	msg := func(id, source string) []byte {
		if source != "" {
			return []byte(fmt.Sprintf(`{"id":%q,"remote_path":"/in/%s.bin","source":%q}`, id, id, source))
		}
		return []byte(fmt.Sprintf(`{"id":%q,"remote_path":"/in/%s.bin"}`, id, id))
	}
	// All on partition 0, in this order.
	values := [][]byte{
		msg("arch", ""),       // 0 archived
		msg("arch", ""),       // 1 redelivered
		msg("failed", ""),     // 2 dead-lettered by its workflow
		[]byte(`{"id":`),      // 3 refused, dead letter recorded
		msg("busy", "north"),  // 4 in flight, with a row
		msg("early", "north"), // 5 in flight, running before its first row
		msg("dropped", ""),    // 6 consumed, its workflow terminated before its first row: a difference
		[]byte(`not json`),    // 7 refused, no dead letter: a difference
		msg("nodlq", ""),      // 8 failed, its dead letter not published: a difference
		msg("later", ""),      // 9 after the committed offset
	}
	offsets := produce(t, cfg.Kafka.Brokers, topic, values)
	commit(t, cfg.Kafka.Brokers, group, topic, offsets[9]) // 0..8 consumed

	record := func(id, status string, finished bool, key string, md5 string) {
		t.Helper()
		ev := audit.Event{JobID: id, WorkflowID: "file-" + id, RunID: "r", Seq: 1, Step: "upload", Outcome: "x", Status: status,
			At: time.Now(), RemotePath: "/in/" + id + ".bin", Finished: finished}
		if key != "" {
			ev.S3Bucket, ev.S3Key, ev.MD5Actual = cfg.S3.Bucket, key, md5
		}
		if err := store.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	body := []byte("archived bytes")
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(cfg.S3.Bucket), Key: aws.String("in/arch.bin"),
		Body: bytes.NewReader(body), Metadata: map[string]string{s3client.MetaMD5: sum(body)}}); err != nil {
		t.Fatal(err)
	}
	record("arch", audit.StatusSucceeded, true, "in/arch.bin", sum(body))
	record("failed", audit.StatusDeadLettered, true, "", "")
	record("nodlq", audit.StatusFailed, true, "", "")
	record("busy", audit.StatusDownloading, false, "", "")
	deadLetter(t, store, "failed", "download", topic, 0, offsets[2], 0)
	deadLetter(t, store, "", audit.StageValidate, topic, 0, offsets[3], 1)
	deadLetter(t, store, "ghost", "upload", "elsewhere", 0, 0, 2) // a workflow's dead letter without its job

	tc := dialTemporal(t, env)
	startIdle(t, tc, "file-early")
	startIdle(t, tc, "file-dropped")
	if err := tc.TerminateWorkflow(ctx, "file-dropped", "", "dropped by the test"); err != nil {
		t.Fatal(err)
	}

	o := reconcile.Options{Store: store, S3: s3c, Messages: reconcile.FromKafka(kc, topic, group),
		Policy:  job.Policy{Sources: map[string]job.SourcePolicy{"default": {}, "north": {}}},
		Running: reconcile.FromTemporal(tc)}
	r, err := reconcile.Check(ctx, o, since)
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.Line{
		{Topic: topic, Source: "", Consumed: 1, Differing: 1},
		{Topic: topic, Source: "default", Consumed: 5, Archived: 1, Redelivered: 1, DeadLettered: 1, Differing: 2},
		{Topic: topic, Source: "north", Consumed: 2, InFlight: 2},
	}
	// The refused message with a dead letter has no source either.
	want[0].Consumed, want[0].DeadLettered = 2, 1
	if fmt.Sprint(r.Ledger) != fmt.Sprint(want) {
		t.Fatalf("ledger\n got %+v\nwant %+v", r.Ledger, want)
	}
	var got []string
	for _, d := range r.Differences {
		where := d.JobID
		if d.Offset != nil {
			where = fmt.Sprintf("%s@%d", d.JobID, *d.Offset-offsets[0])
		}
		got = append(got, d.Kind+" "+where)
	}
	wantDiffs := []string{reconcile.DeadLetterWithoutJob + " ghost@2", reconcile.FailedWithoutDeadLetter + " nodlq@8", reconcile.MessageWithoutWorkflow + " @7",
		reconcile.MessageWithoutWorkflow + " dropped@6"}
	if fmt.Sprint(got) != fmt.Sprint(wantDiffs) {
		t.Fatalf("differences\n got %v\nwant %v\n%+v", got, wantDiffs, r.Differences)
	}
	// A window after every message holds none of them.
	if r, err := reconcile.Check(ctx, o, time.Now().Add(time.Minute)); err != nil || len(r.Ledger) != 0 {
		t.Fatalf("empty window: %+v %v", r, err)
	}
}

// dialTemporal connects to the stack's Temporal.
func dialTemporal(t *testing.T, env *testenv.Env) client.Client {
	t.Helper()
	tc, err := client.Dial(client.Options{HostPort: env.Cfg.Temporal.Address, Namespace: env.Cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	return tc
}

// startIdle starts a workflow that no worker polls for: it stays running, with no audit row.
func startIdle(t *testing.T, tc client.Client, id string) {
	t.Helper()
	if _, err := tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: "ledger-test-idle"}, "Idle"); err != nil {
		t.Fatal(err)
	}
}

// produce writes values to partition 0 of topic, in order, and returns their offsets.
func produce(t *testing.T, brokers []string, topic string, values [][]byte) []int64 {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out []int64
	for _, v := range values {
		_, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.ByteEncoder(v)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, off)
	}
	return out
}

// commit commits group's offset on partition 0 of topic, as the bridge does after a start.
func commit(t *testing.T, brokers []string, group, topic string, offset int64) {
	t.Helper()
	cl, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	om, err := sarama.NewOffsetManagerFromClient(group, cl)
	if err != nil {
		t.Fatal(err)
	}
	pom, err := om.ManagePartition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	pom.MarkOffset(offset, "")
	om.Commit()
	if err := pom.Close(); err != nil {
		t.Fatal(err)
	}
	if err := om.Close(); err != nil {
		t.Fatal(err)
	}
}

// deadLetter indexes a dead letter at offset at of the dead-letter topic for the job message at
// topic/partition/offset.
func deadLetter(t *testing.T, store *audit.Store, jobID, stage, topic string, partition int32, offset, at int64) {
	t.Helper()
	d := audit.DeadLetter{Topic: "jobs.dlq", Partition: 0, Offset: at, Value: []byte("{}"), Reason: "test", Stage: stage,
		OriginTopic: &topic, OriginPartition: &partition, OriginOffset: &offset, PublishedAt: time.Now()}
	if jobID != "" {
		d.JobID = &jobID
	}
	if err := store.AddDeadLetter(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}
