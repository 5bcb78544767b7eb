package devstack

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// startEmbeddedKafka starts kfake on 127.0.0.1. With Dir set, topics and committed offsets survive a
// restart.
func startEmbeddedKafka(o KafkaOptions) (*Kafka, error) {
	if o.TLS != nil || len(o.Users) > 0 {
		return nil, fmt.Errorf("kafka broker %s: TLS and SASL listeners need the %s broker", KafkaEmbedded, KafkaApache)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(int32(o.Partitions), o.Topics...),
		kfake.DefaultNumPartitions(o.Partitions), kfake.AllowAutoTopicCreation()}
	if o.Port > 0 { // else it binds a free port itself, which nothing can take first
		opts = append(opts, kfake.Ports(o.Port))
	}
	if len(o.BrokerConfig) > 0 {
		opts = append(opts, kfake.BrokerConfigs(o.BrokerConfig))
	}
	if o.Dir != "" {
		opts = append(opts, kfake.DataDir(o.Dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka broker: %w", err)
	}
	return &Kafka{Kind: KafkaEmbedded, Brokers: c.ListenAddrs(), DataDir: o.Dir, stop: c.Close}, nil
}
