package devstack

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process Kafka-protocol broker (franz-go's kfake). Clients such as sarama speak the
// real wire protocol to it.
type Kafka struct {
	Cluster *kfake.Cluster
	Brokers []string
}

// StartKafka starts one broker on 127.0.0.1:port (0: free) with the topics created, with partitions
// partitions each (0: 3). With dataDir set, topics and committed offsets survive a restart.
func StartKafka(dataDir string, port, partitions int, topics ...string) (*Kafka, error) {
	var err error
	if port, err = portOrFree(port); err != nil {
		return nil, err
	}
	if partitions <= 0 {
		partitions = 3
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(int32(partitions), topics...),
		kfake.DefaultNumPartitions(partitions), kfake.AllowAutoTopicCreation()}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka broker: %w", err)
	}
	return &Kafka{Cluster: c, Brokers: c.ListenAddrs()}, nil
}

// Stop closes the broker.
func (k *Kafka) Stop() {
	if k != nil {
		k.Cluster.Close()
	}
}
