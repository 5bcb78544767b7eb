package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/devstack"
)

// ReadTopic returns every message on topic, from the oldest to the current end of each partition,
// the partitions read side by side with fetches that do not wait for more data. A broker connection
// lost on the way (one partition's failed request closes the connection the others share) is
// retried with a new client, three times at most.
func ReadTopic(t testing.TB, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var out []*sarama.ConsumerMessage
		if out, err = readTopic(brokers, topic); err == nil {
			return out
		}
		t.Logf("read %s, attempt %d: %v", topic, attempt, err)
		time.Sleep(time.Second)
	}
	t.Fatalf("read %s: %v", topic, err)
	return nil
}

func readTopic(brokers []string, topic string) ([]*sarama.ConsumerMessage, error) {
	sc := sarama.NewConfig()
	sc.Consumer.MaxWaitTime = 10 * time.Millisecond
	sc.Consumer.Fetch.Default = 4 << 20
	cl, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	c, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	parts, err := cl.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("partitions: %w", err)
	}
	var mu sync.Mutex
	var out []*sarama.ConsumerMessage
	var g errgroup.Group
	for _, p := range parts {
		g.Go(func() error {
			msgs, err := readPartition(cl, c, topic, p)
			mu.Lock()
			out = append(out, msgs...)
			mu.Unlock()
			return err
		})
	}
	return out, g.Wait()
}

func readPartition(cl sarama.Client, c sarama.Consumer, topic string, p int32) ([]*sarama.ConsumerMessage, error) {
	newest, err := cl.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return nil, err
	}
	oldest, err := cl.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil || newest <= oldest {
		return nil, err
	}
	pc, err := c.ConsumePartition(topic, p, oldest)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for m := range pc.Messages() {
		if out = append(out, m); m.Offset+1 >= newest {
			break
		}
	}
	return out, nil
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
