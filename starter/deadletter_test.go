package starter_test

// These tests run the bridge against the Apache Kafka broker (bin/kafka), the Temporal dev server
// (bin/temporal) and, for the audit trail, a throw-away PostgreSQL cluster, all on loopback.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/client"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/starter"
)

// fixture is a broker with topics jobs and jobs.dlq (one partition each) and clients for it.
type fixture struct {
	brokers []string
	prod    sarama.SyncProducer // publishes to partition 0
	admin   sarama.ClusterAdmin
}

func setupKafka(t *testing.T, brokerConfigs map[string]string) fixture {
	t.Helper()
	k := testenv.StartKafka(t, devstack.KafkaOptions{Kind: devstack.KafkaApache, Partitions: 1, Topics: []string{"jobs", "jobs.dlq"},
		BrokerConfig: brokerConfigs})
	f := fixture{brokers: k.Brokers}
	sc := sarama.NewConfig()
	var err error
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	if f.prod, err = sarama.NewSyncProducer(f.brokers, sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.prod.Close() })
	if f.admin, err = sarama.NewClusterAdmin(f.brokers, sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.admin.Close() })
	return f
}

func (f fixture) publish(t *testing.T, key, value string) {
	t.Helper()
	if _, _, err := f.prod.SendMessage(&sarama.ProducerMessage{Topic: "jobs", Partition: 0, Key: sarama.StringEncoder(key),
		Value: sarama.StringEncoder(value)}); err != nil {
		t.Fatalf("publish %s: %v", key, err)
	}
}

// dlqProducer is the bridge's producer of dead letters; maxBytes 0 keeps sarama's default.
func (f fixture) dlqProducer(t *testing.T, maxBytes int) sarama.SyncProducer {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	if maxBytes > 0 {
		sc.Producer.MaxMessageBytes = maxBytes
	}
	p, err := sarama.NewSyncProducer(f.brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// run runs b in consumer group group until the test ends.
func (f fixture) run(t *testing.T, group string, b *starter.Bridge) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- starter.Run(ctx, f.brokers, group, "jobs", starter.ConsumerConfig("t", 100*time.Millisecond), b)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// waitCommitted waits until group committed offset want of jobs/0.
func (f fixture) waitCommitted(t *testing.T, group string, want int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if res, err := f.admin.ListConsumerGroupOffsets(group, map[string][]int32{"jobs": {0}}); err == nil {
			if b := res.GetBlock("jobs", 0); b != nil && b.Offset == want {
				return
			}
		}
	}
	t.Fatalf("group %s never committed offset %d of jobs/0", group, want)
}

func startTemporal(t *testing.T, registered bool) client.Client {
	t.Helper()
	bin, err := devstack.FindBin("", "temporal")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{Bin: bin, Headless: true, NoSearchAttributes: !registered})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c, err := client.DialContext(ctx, client.Options{HostPort: srv.Address})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func startAudit(t *testing.T) *audit.Store {
	t.Helper()
	return testenv.StartStore(t)
}

func bridge(c client.Client, dlq sarama.SyncProducer) *starter.Bridge {
	return &starter.Bridge{Temporal: c, TaskQueue: "q", DLQ: dlq, DLQTopic: "jobs.dlq",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Backoff: 200 * time.Millisecond}
}

func headers(m *sarama.ConsumerMessage) map[string]string {
	h := map[string]string{}
	for _, rh := range m.Headers {
		h[string(rh.Key)] = string(rh.Value)
	}
	return h
}

// A message over the job limit whose dead letter no longer fits (the broker's message.max.bytes,
// the dead-letter topic's max.message.bytes, or the producer's MaxMessageBytes) goes to the DLQ
// truncated, and the job after it starts.
func TestOversizedDeadLetterTruncated(t *testing.T) {
	const limit = 80_000
	tc := startTemporal(t, true)
	for _, tt := range []struct {
		name             string
		broker, dlqTopic map[string]string
		producerLimit    int
	}{
		{"broker refuses", map[string]string{"message.max.bytes": strconv.Itoa(limit)}, nil, 0},
		{"dead-letter topic refuses", nil, map[string]string{"max.message.bytes": strconv.Itoa(limit)}, 0},
		{"producer refuses", nil, nil, limit},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := setupKafka(t, tt.broker)
			for k, v := range tt.dlqTopic {
				if err := f.admin.AlterConfig(sarama.TopicResource, "jobs.dlq", map[string]*string{k: &v}, false); err != nil {
					t.Fatal(err)
				}
			}
			big := `{"remote_path":"/` + strings.Repeat("a", limit-120) + `"}` // fits the jobs topic, barely
			if len(big) <= job.MaxMessageBytes {
				t.Fatal("the message must be over the job limit")
			}
			f.publish(t, "big", big)
			id := "good-" + strings.ReplaceAll(tt.name, " ", "-")
			f.publish(t, id, `{"remote_path":"/good.bin"}`)
			f.run(t, "g", bridge(tc, f.dlqProducer(t, tt.producerLimit)))
			f.waitCommitted(t, "g", 2)

			if _, err := tc.DescribeWorkflowExecution(context.Background(), "file-"+id, ""); err != nil {
				t.Fatalf("the job after the big one did not start: %v", err)
			}
			dl := testenv.ReadTopic(t, f.brokers, "jobs.dlq")
			if len(dl) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dl))
			}
			h, sum := headers(dl[0]), sha256.Sum256([]byte(big))
			want := map[string]string{"truncated": "true", "original_size": strconv.Itoa(len(big)),
				"original_sha256": hex.EncodeToString(sum[:]), "stage": "validate", "original_topic": "jobs",
				"original_partition": "0", "original_offset": "0"}
			for k, v := range want {
				if h[k] != v {
					t.Errorf("header %s = %q, want %q", k, h[k], v)
				}
			}
			if !strings.Contains(h["reason"], "limit") || string(dl[0].Value) != big[:starter.TruncatedValueBytes] {
				t.Errorf("reason %q, value of %d bytes", h["reason"], len(dl[0].Value))
			}
		})
	}
}

// A start Temporal refuses for good (here: search attributes not registered) is dead-lettered at
// stage start instead of retried, and the bridge goes on.
func TestStartRefusedForGoodDeadLettered(t *testing.T) {
	tc := startTemporal(t, false)
	f := setupKafka(t, nil)
	f.publish(t, "j1", `{"remote_path":"/a.bin"}`)
	f.publish(t, "j2", `{"remote_path":"/b.bin"}`)
	f.run(t, "g", bridge(tc, f.dlqProducer(t, 0)))
	f.waitCommitted(t, "g", 2)
	dl := testenv.ReadTopic(t, f.brokers, "jobs.dlq")
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dl))
	}
	h := headers(dl[0])
	if h["stage"] != starter.StageStart || h["job_id"] != "j1" || h["workflow_id"] != "file-j1" ||
		!strings.Contains(h["reason"], "search attribute") || string(dl[0].Value) != `{"remote_path":"/a.bin"}` {
		t.Fatalf("dead letter %q: headers %v", dl[0].Value, h)
	}
}

// A malformed message reaches the audit table with only the bridge running, once, however often
// it is delivered.
func TestRefusalRecordedWithoutDashboard(t *testing.T) {
	store := startAudit(t)
	f := setupKafka(t, nil)
	f.publish(t, "bad", `{"remote_path":"relative/path"}`)
	b := bridge(nil, f.dlqProducer(t, 0)) // no valid job: Temporal is never asked
	b.Audit = store
	f.run(t, "g1", b)
	f.waitCommitted(t, "g1", 1)
	f.run(t, "g2", b) // a second group reads the message again, as a redelivery would
	f.waitCommitted(t, "g2", 1)

	rows, err := store.DeadLetters(context.Background(), audit.DLQFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d dead-letter rows, want 1", len(rows))
	}
	d := rows[0]
	if d.Stage != starter.StageValidate || !strings.Contains(d.Reason, "absolute") || d.OriginOffset == nil ||
		*d.OriginOffset != 0 || *d.OriginTopic != "jobs" || d.JobID == nil || *d.JobID != "bad" || d.Topic != "jobs.dlq" {
		t.Fatalf("row %+v", d)
	}
	if n := len(testenv.ReadTopic(t, f.brokers, "jobs.dlq")); n != 1 {
		t.Fatalf("%d messages on the dead-letter topic, want 1", n)
	}

	// The dashboard started later reads the same message: still one row, and it moves on past it.
	kc, err := kafkaops.Dial(f.brokers, "ui")
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	x := &kafkaops.Indexer{Kafka: kc, Store: store, Topic: "jobs.dlq", Logger: b.Logger}
	if _, err := x.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, err = store.DeadLetters(context.Background(), audit.DLQFilter{})
	next, err2 := store.NextDLQOffsets(context.Background(), "jobs.dlq")
	if err != nil || err2 != nil || len(rows) != 1 || next[0] != 1 {
		t.Fatalf("after the indexer: %d rows, next offsets %v (%v, %v)", len(rows), next, err, err2)
	}
}
