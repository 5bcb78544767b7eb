package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/devstack"
)

// ReadTopic returns every message on topic, from the oldest to the current end of each partition.
func ReadTopic(t testing.TB, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	cl, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := cl.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []*sarama.ConsumerMessage
	for _, p := range parts {
		newest, err1 := cl.GetOffset(topic, p, sarama.OffsetNewest)
		oldest, err2 := cl.GetOffset(topic, p, sarama.OffsetOldest)
		if err1 != nil || err2 != nil {
			t.Fatalf("offsets of %s/%d: %v %v", topic, p, err1, err2)
		}
		if newest <= oldest {
			continue
		}
		pc, err := c.ConsumePartition(topic, p, oldest)
		if err != nil {
			t.Fatal(err)
		}
		for m := range pc.Messages() {
			out = append(out, m)
			if m.Offset+1 >= newest {
				break
			}
		}
		pc.Close()
	}
	return out
}

// StartKafka starts a broker for one test (o.Kind; data in a temporary folder), stopped in
// t.Cleanup; a failed test prints the tail of the broker's log.
func StartKafka(t testing.TB, o devstack.KafkaOptions) *devstack.Kafka {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	logf, err := os.Create(filepath.Join(o.Dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	o.Log = logf
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	k, err := devstack.StartKafka(ctx, o)
	if err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("start the %s Kafka broker: %v\n%s", o.Kind, err, tail(b, 4000))
	}
	t.Logf("%s Kafka broker %s ready in %v on %v", k.Kind, k.Version, time.Since(start).Round(time.Millisecond), k.Brokers)
	t.Cleanup(func() {
		k.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("broker log tail:\n%s", tail(b, 4000))
		}
		logf.Close()
	})
	return k
}

// Topics lists the topics the brokers have.
func Topics(t testing.TB, brokers []string) []string {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Metadata.AllowAutoTopicCreation = false
	cl, err := sarama.NewClient(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ts, err := cl.Topics()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
