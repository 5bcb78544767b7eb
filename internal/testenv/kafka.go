package testenv

import (
	"testing"

	"github.com/IBM/sarama"
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
