package activities

import (
	"context"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/dlq"
	"github.com/kafkasync/kafkasync/internal/job"
)

// DeadLetterInput is a job that exhausted its retries.
type DeadLetterInput struct {
	JobID string
	// Message is the original job message value; Key its key.
	Message    []byte
	Key        []byte
	Reason     string
	Stage      string
	ErrorType  string
	Attempts   int
	WorkflowID string
	// Source names the job's SFTP source.
	Source string
	// Where the job message was read, when known.
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// DeadLetter publishes the job to the dead-letter topic, keyed by its job ID.
func (a *Transfer) DeadLetter(ctx context.Context, in DeadLetterInput) error {
	msg := &sarama.ProducerMessage{
		Topic: a.DLQTopic,
		Key:   sarama.ByteEncoder(in.JobID),
		Value: sarama.ByteEncoder(in.Message),
		Headers: []sarama.RecordHeader{
			{Key: []byte(dlq.HeaderReason), Value: []byte(in.Reason)},
			{Key: []byte(dlq.HeaderStage), Value: []byte(in.Stage)},
			{Key: []byte(dlq.HeaderErrorType), Value: []byte(in.ErrorType)},
			{Key: []byte(dlq.HeaderAttempts), Value: []byte(strconv.Itoa(in.Attempts))},
			{Key: []byte(dlq.HeaderWorkflowID), Value: []byte(in.WorkflowID)},
			{Key: []byte(dlq.HeaderJobID), Value: []byte(in.JobID)},
			{Key: []byte(dlq.HeaderSource), Value: []byte(job.SourceName(in.Source))},
		},
	}
	if in.SourceTopic != "" {
		msg.Headers = append(msg.Headers,
			sarama.RecordHeader{Key: []byte(dlq.HeaderTopic), Value: []byte(in.SourceTopic)},
			sarama.RecordHeader{Key: []byte(dlq.HeaderPartition), Value: []byte(strconv.Itoa(int(in.SourcePartition)))},
			sarama.RecordHeader{Key: []byte(dlq.HeaderOffset), Value: []byte(strconv.FormatInt(in.SourceOffset, 10))})
	}
	if _, _, err := a.Producer.SendMessage(msg); err != nil {
		return fmt.Errorf("dead-letter %s to %s: %w", in.JobID, a.DLQTopic, err)
	}
	return nil
}
