package starter_test

// These tests run against the Apache Kafka broker (bin/kafka) on its TLS, mutual-TLS and SASL_SSL
// listeners. Temporal is a stand-in that records the starts: the broker is what they test.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/internal/testpki"
	"github.com/kafkasync/kafkasync/starter"
)

// secureBroker is an Apache broker with every listener open and one login per SASL mechanism.
func secureBroker(t *testing.T) (*devstack.Kafka, *testpki.PKI) {
	p := testpki.New(t, "kafkasync test CA")
	k := testenv.StartKafka(t, devstack.KafkaOptions{Kind: devstack.KafkaApache, Partitions: 1, Topics: []string{"jobs", "jobs.dlq"},
		TLS: &devstack.KafkaTLS{CertFile: p.ServerCertFile, KeyFile: p.ServerKeyFile, CAFile: p.CAFile},
		Users: []devstack.SASLUser{{Mechanism: "SCRAM-SHA-256", Name: "scram256", Password: "s3cret-256"},
			{Mechanism: "SCRAM-SHA-512", Name: "scram512", Password: "s3cret-512"},
			{Mechanism: "PLAIN", Name: "plain", Password: "s3cret-plain"}}})
	return k, p
}

func kafkaConfig(c config.Kafka, group string) config.Config {
	cfg := config.Default()
	c.ClientID, c.JobsTopic, c.DLQTopic, c.Group, c.CommitInterval = "kafkasync-test", "jobs", "jobs.dlq", group, config.Duration(100*time.Millisecond)
	cfg.Kafka = c
	cfg.Temporal.TaskQueue = "q"
	return cfg
}

func TestKafkaSecurity(t *testing.T) {
	k, p := secureBroker(t)
	t.Run("accepted", func(t *testing.T) { everyClientOverTLSAndSASL(t, k, p) })
	t.Run("refused", func(t *testing.T) { wrongCredentialsRefused(t, k, p) })
}

// Over each secure listener: submit publishes, the bridge's consumer group reads, and its
// dead-letter producer writes a refused job to the dead-letter topic.
func everyClientOverTLSAndSASL(t *testing.T, k *devstack.Kafka, p *testpki.PKI) {
	tlsOn := config.TLS{Enable: true, CAFile: p.CAFile}
	for i, tt := range []struct {
		name string
		c    config.Kafka
	}{
		{"TLS", config.Kafka{Brokers: k.TLSBrokers, TLS: tlsOn}},
		{"mutual TLS", config.Kafka{Brokers: k.MTLSBrokers, TLS: config.TLS{Enable: true, CAFile: p.CAFile,
			CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile}}},
		{"SASL SCRAM-SHA-256", config.Kafka{Brokers: k.SASLBrokers, TLS: tlsOn,
			SASL: config.SASL{Mechanism: "SCRAM-SHA-256", User: "scram256", Password: "s3cret-256"}}},
		{"SASL SCRAM-SHA-512", config.Kafka{Brokers: k.SASLBrokers, TLS: tlsOn,
			SASL: config.SASL{Mechanism: "SCRAM-SHA-512", User: "scram512", Password: "s3cret-512"}}},
		{"SASL PLAIN", config.Kafka{Brokers: k.SASLBrokers, TLS: tlsOn,
			SASL: config.SASL{Mechanism: "PLAIN", User: "plain", Password: "s3cret-plain"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := kafkaConfig(tt.c, fmt.Sprintf("g%d", i))
			prod, err := kafkaconn.NewProducer(cfg.Kafka, 0)
			if err != nil {
				t.Fatalf("producer: %v", err)
			}
			defer prod.Close()
			good := fmt.Sprintf("good-%d", i)
			if _, _, _, err := starter.Submit(prod, "jobs", job.Job{ID: good, RemotePath: "/a.bin", Size: -1}); err != nil {
				t.Fatalf("submit: %v", err)
			}
			bad := fmt.Sprintf("bad-%d", i)
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "jobs", Key: sarama.StringEncoder(bad),
				Value: sarama.StringEncoder(`{"remote_path":"relative"}`)}); err != nil {
				t.Fatal(err)
			}
			rec := &flakyTemporal{}
			b := starter.New(cfg, rec, prod, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- starter.RunConfig(ctx, cfg, b) }()
			defer func() { cancel(); <-done }()
			waitUntil(t, 30*time.Second, "the good job started and the bad one dead-lettered", func() bool {
				_, ids := rec.snapshot()
				return slices.Contains(ids, "file-"+good+"|/a.bin") && hasKey(testenv.ReadTopic(t, k.Brokers, "jobs.dlq"), bad)
			})
		})
	}
}

// Wrong credentials are refused by the producer and by the bridge, each with an error and at once.
func wrongCredentialsRefused(t *testing.T, k *devstack.Kafka, p *testpki.PKI) {
	other := testpki.New(t, "another CA")
	tlsOn := config.TLS{Enable: true, CAFile: p.CAFile}
	for i, tt := range []struct {
		name string
		c    config.Kafka
	}{
		{"wrong SCRAM password", config.Kafka{Brokers: k.SASLBrokers, TLS: tlsOn,
			SASL: config.SASL{Mechanism: "SCRAM-SHA-512", User: "scram512", Password: "wrong"}}},
		{"wrong PLAIN password", config.Kafka{Brokers: k.SASLBrokers, TLS: tlsOn,
			SASL: config.SASL{Mechanism: "PLAIN", User: "plain", Password: "wrong"}}},
		{"broker certificate from a foreign CA", config.Kafka{Brokers: k.TLSBrokers, TLS: config.TLS{Enable: true, CAFile: other.CAFile}}},
		{"no client certificate", config.Kafka{Brokers: k.MTLSBrokers, TLS: tlsOn}},
		{"client certificate from a foreign CA", config.Kafka{Brokers: k.MTLSBrokers, TLS: config.TLS{Enable: true, CAFile: p.CAFile,
			CertFile: other.ClientCertFile, KeyFile: other.ClientKeyFile}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := kafkaConfig(tt.c, fmt.Sprintf("refused%d", i))
			start := time.Now()
			if prod, err := kafkaconn.NewProducer(cfg.Kafka, 0); err == nil {
				_, _, _, err = starter.Submit(prod, "jobs", job.Job{RemotePath: "/a.bin", Size: -1})
				prod.Close()
				if err == nil {
					t.Fatal("the producer published")
				}
			} else {
				t.Logf("producer: %v", err)
			}
			rec := &flakyTemporal{}
			b := starter.New(cfg, rec, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := starter.RunConfig(ctx, cfg, b)
			if err == nil || ctx.Err() != nil {
				t.Fatalf("the bridge ran (err %v, after %v)", err, time.Since(start))
			}
			t.Logf("bridge: %v (both refused in %v)", err, time.Since(start).Round(time.Millisecond))
			if calls, _ := rec.snapshot(); calls != 0 {
				t.Fatalf("%d starts", calls)
			}
		})
	}
}

func hasKey(msgs []*sarama.ConsumerMessage, key string) bool {
	return slices.ContainsFunc(msgs, func(m *sarama.ConsumerMessage) bool { return string(m.Key) == key })
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("after %v: not yet %s", d, what)
}

// A topic the broker does not have (Apache Kafka with auto-creation off) is a clear error for
// submit and for the bridge, not a wait.
func TestMissingTopicIsAClearError(t *testing.T) {
	k := testenv.StartKafka(t, devstack.KafkaOptions{Kind: devstack.KafkaApache, Partitions: 1, Topics: []string{"jobs"}})
	cfg := kafkaConfig(config.Kafka{Brokers: k.Brokers}, "g")
	prod, err := kafkaconn.NewProducer(cfg.Kafka, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	start := time.Now()
	_, _, _, err = starter.Submit(prod, "jbos", job.Job{RemotePath: "/a.bin", Size: -1})
	if !errors.Is(err, starter.ErrNoTopic) || !strings.Contains(err.Error(), `"jbos"`) {
		t.Fatalf("submit to a missing topic: %v", err)
	}
	t.Logf("submit: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
	for _, c := range []struct{ jobs, dlq string }{{"jbos", "jobs"}, {"jobs", "jobs.dlq"}} {
		cfg.Kafka.JobsTopic, cfg.Kafka.DLQTopic = c.jobs, c.dlq
		b := starter.New(cfg, &flakyTemporal{}, prod, slog.New(slog.NewTextHandler(io.Discard, nil)))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start = time.Now()
		err := starter.RunConfig(ctx, cfg, b)
		cancel()
		if !errors.Is(err, starter.ErrNoTopic) {
			t.Fatalf("bridge on jobs topic %s, dead letters to %s: %v", c.jobs, c.dlq, err)
		}
		t.Logf("bridge: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
	}
	topics := testenv.Topics(t, k.Brokers)
	if slices.Contains(topics, "jbos") || slices.Contains(topics, "jobs.dlq") {
		t.Fatalf("a topic was created: %v", topics)
	}
}
