package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/IBM/sarama"
)

// The brokers devstack can start.
const (
	// KafkaApache is the Apache Kafka broker (one KRaft node, a Java child process) from bin/kafka.
	KafkaApache = "apache"
	// KafkaEmbedded is franz-go's kfake, an in-process Kafka-protocol broker: no Java, starts at once.
	KafkaEmbedded = "embedded"
)

// Kafka is a running broker. Clients reach it on Brokers (plaintext) and, when StartKafka was given
// a TLS identity, on the TLS, mutual-TLS and SASL_SSL listeners.
type Kafka struct {
	Kind    string
	Version string // the Apache Kafka version; empty for the embedded broker
	Brokers []string
	// Listeners that only the Apache broker opens, with KafkaOptions.TLS set.
	TLSBrokers, MTLSBrokers, SASLBrokers []string
	DataDir                              string

	stop func()
	proc *proc // the Apache broker's JVM; nil for the embedded broker
}

// KafkaTLS is the broker's TLS identity: PEM files of its certificate, its key and the CA that signs
// client certificates (for the mutual-TLS listener).
type KafkaTLS struct {
	CertFile, KeyFile, CAFile string
}

// SASLUser is a login the Apache broker accepts on its SASL_SSL listener.
type SASLUser struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Name      string
	Password  string
}

// KafkaOptions configures StartKafka.
type KafkaOptions struct {
	Kind string // KafkaApache or KafkaEmbedded ("": KafkaApache)
	// BinDir holds the Apache broker in BinDir/kafka ("": searched, see FindKafkaHome).
	BinDir string
	// Dir keeps the broker's data; with the same Dir a restarted broker has its topics and offsets.
	Dir        string
	Port       int // plaintext listener, 0: free
	Partitions int // partitions of each topic (0: 3)
	Topics     []string
	// TLS opens the TLS, mutual-TLS and SASL_SSL listeners (Apache only).
	TLS   *KafkaTLS
	Users []SASLUser
	// BrokerConfig overrides broker settings (server.properties names), such as message.max.bytes.
	BrokerConfig map[string]string
	Log          io.Writer
}

// StartKafka starts the broker o.Kind names, creates the topics and waits until each partition has a
// leader.
func StartKafka(ctx context.Context, o KafkaOptions) (*Kafka, error) {
	if o.Partitions <= 0 {
		o.Partitions = 3
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch o.Kind {
	case "", KafkaApache:
		return startApacheKafka(ctx, o)
	case KafkaEmbedded:
		return startEmbeddedKafka(o)
	default:
		return nil, fmt.Errorf("kafka broker %q: want %s or %s", o.Kind, KafkaApache, KafkaEmbedded)
	}
}

// Stop ends the broker.
func (k *Kafka) Stop() {
	if k != nil && k.stop != nil {
		k.stop()
	}
}

// createTopics creates the topics that are missing and waits until every partition has a leader.
func createTopics(ctx context.Context, brokers []string, partitions int, topics []string) error {
	sc := sarama.NewConfig()
	sc.Admin.Timeout = 30 * time.Second
	admin, err := sarama.NewClusterAdmin(brokers, sc)
	if err != nil {
		return err
	}
	defer admin.Close()
	for _, t := range topics {
		err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: int32(partitions), ReplicationFactor: 1}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	return waitFor(ctx, nil, 30*time.Second, func(context.Context) error {
		md, err := admin.DescribeTopics(topics)
		if err != nil {
			return err
		}
		for _, t := range md {
			if !errors.Is(t.Err, sarama.ErrNoError) {
				return fmt.Errorf("topic %s: %w", t.Name, t.Err)
			}
			for _, p := range t.Partitions {
				if p.Leader < 0 {
					return fmt.Errorf("topic %s partition %d has no leader", t.Name, p.ID)
				}
			}
		}
		return nil
	})
}
