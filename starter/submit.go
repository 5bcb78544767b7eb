package starter

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/job"
)

// Submit validates j exactly as the bridge will (deriving the ID when j.ID is empty), publishes it
// to topic in the current message format keyed by its ID, and returns the job as sent and where it
// landed.
func Submit(p sarama.SyncProducer, topic string, j job.Job) (sent job.Job, partition int32, offset int64, err error) {
	msg := map[string]any{"remote_path": j.RemotePath}
	if j.ID != "" {
		msg["id"] = j.ID
	}
	if j.MD5 != "" {
		msg["md5"] = j.MD5
	}
	if j.Size >= 0 {
		msg["size"] = j.Size
	}
	if j.DestKey != "" {
		msg["dest_key"] = j.DestKey
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return job.Job{}, 0, 0, err
	}
	sent, err = job.Parse(nil, b)
	if err != nil {
		return job.Job{}, 0, 0, err
	}
	partition, offset, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(sent.ID), Value: sarama.ByteEncoder(b)})
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return job.Job{}, 0, 0, fmt.Errorf("publish job %s: kafka topic %q %w", sent.ID, topic, ErrNoTopic)
	}
	if err != nil {
		return job.Job{}, 0, 0, fmt.Errorf("publish job %s to %s: %w", sent.ID, topic, err)
	}
	return sent, partition, offset, nil
}
