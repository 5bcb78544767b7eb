package devstack

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// Each broker `kafkasync dev` can run keeps its topics, messages and committed offsets when it is
// stopped and started again on the same folder and port.
func TestKafkaKeepsItsDataAcrossARestart(t *testing.T) {
	for _, kind := range []string{KafkaApache, KafkaEmbedded} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			port, err := FreePort()
			if err != nil {
				t.Fatal(err)
			}
			o := KafkaOptions{Kind: kind, Dir: t.TempDir(), Port: port, Partitions: 2, Topics: []string{"jobs"}, Log: testWriter{t}}
			k, err := StartKafka(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			sc := sarama.NewConfig()
			sc.Producer.Return.Successes = true
			p, err := sarama.NewSyncProducer(k.Brokers, sc)
			if err != nil {
				t.Fatal(err)
			}
			part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: "jobs", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("v")})
			p.Close()
			if err != nil {
				t.Fatal(err)
			}
			commit(t, k.Brokers)
			stopped := time.Now()
			k.Stop()
			t.Logf("stopped in %v", time.Since(stopped).Round(time.Millisecond))

			if k, err = StartKafka(ctx, o); err != nil {
				t.Fatalf("start again: %v", err)
			}
			defer k.Stop()
			admin, err := sarama.NewClusterAdmin(k.Brokers, sc)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			res, err := admin.ListConsumerGroupOffsets("g", map[string][]int32{"jobs": {part}})
			if err != nil {
				t.Fatal(err)
			}
			if b := res.GetBlock("jobs", part); b == nil || b.Offset != off+1 {
				t.Fatalf("committed offset after the restart: %+v, want %d", b, off+1)
			}
			cl, err := sarama.NewClient(k.Brokers, sc)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if newest, err := cl.GetOffset("jobs", part, sarama.OffsetNewest); err != nil || newest != off+1 {
				t.Fatalf("end of jobs/%d after the restart: %d %v, want %d", part, newest, err, off+1)
			}
		})
	}
}

// commit reads jobs in group g and commits every message it read, as the bridge does.
func commit(t *testing.T, brokers []string) {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = false
	cg, err := sarama.NewConsumerGroup(brokers, "g", sc)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := &commitOne{done: cancel}
	if err := cg.Consume(ctx, []string{"jobs"}, h); err != nil {
		t.Fatal(err)
	}
	if !h.committed {
		t.Fatal("nothing read from jobs")
	}
}

// commitOne marks and commits the first message it gets, then ends the session.
type commitOne struct {
	done      func()
	committed bool
}

func (*commitOne) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*commitOne) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *commitOne) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		s.Commit()
		h.committed = true
		h.done()
		return nil
	}
	return nil
}

// The storage tool reads a cluster id starting with "-" as an option.
func TestClusterIDNeverLooksLikeAnOption(t *testing.T) {
	for range 2000 {
		id, err := clusterID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 22 || id[0] == '-' {
			t.Fatalf("cluster id %q", id)
		}
	}
}
