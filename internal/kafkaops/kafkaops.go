// Package kafkaops is what the dashboard does with Kafka: it indexes the dead-letter topic into the
// audit database, replays dead letters onto the jobs topic, and measures the bridge's consumer lag.
package kafkaops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/dlq"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
)

// Kafka is one client shared by the indexer, the replayer and the lag reader.
type Kafka struct {
	client   sarama.Client
	admin    sarama.ClusterAdmin
	producer sarama.SyncProducer
}

// Dial connects to the brokers without TLS or SASL (tests, the dev stack).
func Dial(brokers []string, clientID string) (*Kafka, error) {
	return DialConfig(config.Kafka{Brokers: brokers, ClientID: clientID})
}

// DialConfig connects as c says (brokers, client id, TLS, SASL).
func DialConfig(c config.Kafka) (*Kafka, error) {
	brokers, clientID := c.Brokers, c.ClientID
	sc := sarama.NewConfig()
	sc.ClientID = clientID
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Retry.Max = 5
	sc.Consumer.Return.Errors = true
	sc.Metadata.AllowAutoTopicCreation = false
	if err := kafkaconn.Apply(sc, c); err != nil {
		return nil, err
	}
	cl, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", brokers, err)
	}
	p, err := sarama.NewSyncProducerFromClient(cl)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	a, err := sarama.NewClusterAdminFromClient(cl)
	if err != nil {
		p.Close()
		cl.Close()
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	return &Kafka{client: cl, admin: a, producer: p}, nil
}

// Close releases the client.
func (k *Kafka) Close() error {
	k.producer.Close()
	return k.admin.Close() // closes the client too
}

// Ping checks that a broker answers a metadata request.
func (k *Kafka) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- k.client.RefreshMetadata() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka: %w", ctx.Err())
	}
}

// Lag is how far the bridge's consumer group is behind the jobs topic.
type Lag struct {
	Total       int64           `json:"total"`
	Partitions  map[int32]int64 `json:"partitions"`
	Uncommitted bool            `json:"uncommitted"` // the group has not committed on some partition
}

// ConsumerLag returns the lag of group on topic: per partition, the newest offset minus the committed one.
func (k *Kafka) ConsumerLag(topic, group string) (Lag, error) {
	parts, err := k.client.Partitions(topic)
	if err != nil {
		return Lag{}, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	res, err := k.admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return Lag{}, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	lag := Lag{Partitions: map[int32]int64{}}
	for _, p := range parts {
		newest, err := k.client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return Lag{}, fmt.Errorf("newest offset %s/%d: %w", topic, p, err)
		}
		committed := int64(-1)
		if b := res.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError {
			committed = b.Offset
		}
		if committed < 0 {
			oldest, err := k.client.GetOffset(topic, p, sarama.OffsetOldest)
			if err != nil {
				return Lag{}, fmt.Errorf("oldest offset %s/%d: %w", topic, p, err)
			}
			committed, lag.Uncommitted = oldest, true
		}
		l := max(newest-committed, 0)
		lag.Partitions[p] = l
		lag.Total += l
	}
	return lag, nil
}

// Republish sends a dead letter's original job message back to the jobs topic with its original key,
// so that it runs again under the same job identity.
func (k *Kafka) Republish(topic string) audit.Publish {
	return func(_ context.Context, d audit.DeadLetter) (int32, int64, error) {
		msg := &sarama.ProducerMessage{
			Topic: topic,
			Value: sarama.ByteEncoder(d.Value),
			Headers: []sarama.RecordHeader{{Key: []byte(dlq.HeaderReplayedFrom),
				Value: fmt.Appendf(nil, "%s/%d/%d", d.Topic, d.Partition, d.Offset)}},
		}
		if d.Key != nil {
			msg.Key = sarama.ByteEncoder(d.Key)
		}
		p, o, err := k.producer.SendMessage(msg)
		if err != nil {
			return 0, 0, fmt.Errorf("publish to %s: %w", topic, err)
		}
		return p, o, nil
	}
}

// Indexer copies the dead-letter topic into table dead_letters.
type Indexer struct {
	Kafka  *Kafka
	Store  *audit.Store
	Topic  string
	Logger *slog.Logger
}

// CatchUp indexes every message on the topic up to its current end and returns how many were new
// to this call. A topic that does not exist yet has nothing to index.
func (x *Indexer) CatchUp(ctx context.Context) (int, error) {
	parts, err := x.Kafka.client.Partitions(x.Topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("partitions of %s: %w", x.Topic, err)
	}
	next, err := x.Store.NextDLQOffsets(ctx, x.Topic)
	if err != nil {
		return 0, err
	}
	consumer, err := sarama.NewConsumerFromClient(x.Kafka.client)
	if err != nil {
		return 0, err
	}
	defer consumer.Close()
	n := 0
	for _, p := range parts {
		newest, err := x.Kafka.client.GetOffset(x.Topic, p, sarama.OffsetNewest)
		if err != nil {
			return n, err
		}
		from, ok := next[p]
		if !ok {
			if from, err = x.Kafka.client.GetOffset(x.Topic, p, sarama.OffsetOldest); err != nil {
				return n, err
			}
		}
		if from >= newest {
			continue
		}
		err = readRange(ctx, consumer, x.Topic, p, from, newest, func(m *sarama.ConsumerMessage) error {
			if err := x.Store.AddDeadLetter(ctx, FromMessage(m)); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Run catches up every interval until ctx ends.
func (x *Indexer) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := x.CatchUp(ctx); err != nil && ctx.Err() == nil {
			x.Logger.Warn("dead-letter index", "topic", x.Topic, "err", err)
		} else if n > 0 {
			x.Logger.Info("dead letters indexed", "topic", x.Topic, "new", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// FromMessage reads a dead-letter message and its headers.
func FromMessage(m *sarama.ConsumerMessage) audit.DeadLetter {
	h := map[string]string{}
	for _, rh := range m.Headers {
		if rh != nil {
			h[string(rh.Key)] = string(rh.Value)
		}
	}
	d := audit.DeadLetter{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value,
		Reason: h[dlq.HeaderReason], Stage: h[dlq.HeaderStage], PublishedAt: m.Timestamp}
	if d.PublishedAt.IsZero() {
		d.PublishedAt = time.Now()
	}
	if d.Reason == "" {
		d.Reason = "(no reason header)"
	}
	if d.Stage == "" {
		d.Stage = "unknown"
	}
	str := func(k string) *string {
		if v, ok := h[k]; ok && v != "" {
			return &v
		}
		return nil
	}
	d.ErrorType, d.WorkflowID, d.OriginTopic = str(dlq.HeaderErrorType), str(dlq.HeaderWorkflowID), str(dlq.HeaderTopic)
	d.JobID, d.Source = str(dlq.HeaderJobID), str(dlq.HeaderSource)
	if d.JobID == nil && len(m.Key) > 0 {
		k := string(m.Key)
		d.JobID = &k
	}
	if v, err := strconv.Atoi(h[dlq.HeaderAttempts]); err == nil {
		d.Attempts = &v
	}
	if v, err := strconv.ParseInt(h[dlq.HeaderPartition], 10, 32); err == nil {
		p := int32(v)
		d.OriginPartition = &p
	}
	if v, err := strconv.ParseInt(h[dlq.HeaderOffset], 10, 64); err == nil {
		d.OriginOffset = &v
	}
	return d
}

// Send publishes one message and returns where it went.
func (k *Kafka) Send(topic string, key, value []byte, headers ...sarama.RecordHeader) (int32, int64, error) {
	msg := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value), Headers: headers}
	if key != nil {
		msg.Key = sarama.ByteEncoder(key)
	}
	p, o, err := k.producer.SendMessage(msg)
	if err != nil {
		return 0, 0, fmt.Errorf("publish to %s: %w", topic, err)
	}
	return p, o, nil
}

// ErrTooMany is returned by Consumed when the window holds more messages than its limit.
var ErrTooMany = errors.New("more messages in the window than the limit")

// Consumed calls f for each message of topic that group has consumed (below its committed offset)
// with a timestamp at or after since, partition by partition in offset order; at most limit.
func (k *Kafka) Consumed(ctx context.Context, topic, group string, since time.Time, limit int, f func(*sarama.ConsumerMessage) error) error {
	parts, err := k.client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", topic, err)
	}
	res, err := k.admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return fmt.Errorf("offsets of group %s: %w", group, err)
	}
	consumer, err := sarama.NewConsumerFromClient(k.client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	n := 0
	for _, p := range parts {
		b := res.GetBlock(topic, p)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset <= 0 {
			continue // the group has consumed nothing here
		}
		from, err := k.client.GetOffset(topic, p, since.UnixMilli())
		if err != nil {
			return fmt.Errorf("offset of %s/%d at %s: %w", topic, p, since.Format(time.RFC3339), err)
		}
		if from < 0 || from >= b.Offset {
			continue // no message of the window, or none consumed yet
		}
		if n += int(b.Offset - from); n > limit {
			return fmt.Errorf("%s since %s: %w (%d)", topic, since.Format(time.RFC3339), ErrTooMany, limit)
		}
		if err := readRange(ctx, consumer, topic, p, from, b.Offset, f); err != nil {
			return err
		}
	}
	return nil
}

// readRange calls f for the messages of topic/p from offset from up to, not including, to.
// Offsets that hold no message (a transaction's markers, a compacted topic's gaps) are never
// delivered: once the broker has offsets up to to and nothing more arrives, the range is done.
func readRange(ctx context.Context, consumer sarama.Consumer, topic string, p int32, from, to int64, f func(*sarama.ConsumerMessage) error) error {
	pc, err := consumer.ConsumePartition(topic, p, from)
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", topic, p, err)
	}
	defer pc.Close()
	idle := time.NewTimer(3 * time.Second)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case cerr := <-pc.Errors():
			return cerr
		case <-idle.C:
			if pc.HighWaterMarkOffset() >= to {
				return nil
			}
			idle.Reset(3 * time.Second)
		case m := <-pc.Messages():
			idle.Reset(3 * time.Second)
			if m.Offset >= to {
				return nil
			}
			if err := f(m); err != nil {
				return err
			}
			if m.Offset+1 >= to {
				return nil
			}
		}
	}
}
