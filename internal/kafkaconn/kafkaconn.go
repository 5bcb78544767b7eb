// Package kafkaconn applies kafka.tls and kafka.sasl to a sarama configuration, so every Kafka
// client of kafkasync (bridge, dead-letter producer, dashboard) connects the same way.
package kafkaconn

import (
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/kafkasync/kafkasync/internal/config"
)

// Apply sets sc's TLS and SASL from c. No client asks the brokers to create a topic: a mistyped
// topic name is an error, not a new topic.
func Apply(sc *sarama.Config, c config.Kafka) error {
	sc.Metadata.AllowAutoTopicCreation = false
	if c.TLS.Enable {
		tc, err := c.TLS.ClientConfig()
		if err != nil {
			return fmt.Errorf("kafka.tls: %w", err)
		}
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, tc
	}
	if c.SASL.Mechanism == "" {
		return nil
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User, sc.Net.SASL.Password = c.SASL.User, c.SASL.Password.Reveal()
	switch c.SASL.Mechanism {
	case "PLAIN":
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case "SCRAM-SHA-256":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case "SCRAM-SHA-512":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	default:
		return fmt.Errorf("kafka.sasl.mechanism %q", c.SASL.Mechanism)
	}
	return nil
}

// scramClient adapts github.com/xdg-go/scram to sarama.SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }

// NewProducer returns a synchronous Kafka producer that waits for every in-sync replica. A message
// waits up to linger for others sent meanwhile, to go in one produce request: worth it where many
// goroutines send at once (the worker's done events), a delay for each message where one sender
// sends them one after another (0: each is sent at once).
func NewProducer(c config.Kafka, linger time.Duration) (sarama.SyncProducer, error) {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Return.Successes = true
	sc.Producer.Retry.Max = 10
	// Idempotent: a send the producer retries after a lost acknowledgement lands once.
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Flush.Frequency = linger
	if err := Apply(sc, c); err != nil {
		return nil, err
	}
	p, err := sarama.NewSyncProducer(c.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka producer %v: %w", c.Brokers, err)
	}
	return p, nil
}
