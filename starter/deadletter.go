package starter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/dlq"
	"github.com/kafkasync/kafkasync/internal/metrics"
)

// TruncatedValueBytes is how much of a refused message's value a truncated dead letter keeps.
const TruncatedValueBytes = 4 << 10

// truncatedReasonBytes bounds the reason header of a truncated dead letter.
const truncatedReasonBytes = 1 << 10

// refusal is why the bridge dead-letters a message.
type refusal struct {
	reason, stage     string
	jobID, workflowID string // empty when the message is not a valid job
	source            string // the job's source; empty when the message is not a valid job
}

// refuse dead-letters msg and records it in the audit trail, retrying both until they succeed or
// ctx ends. A message already recorded (a redelivery) is not dead-lettered again.
func (b *Bridge) refuse(ctx context.Context, log *slog.Logger, msg *sarama.ConsumerMessage, r refusal) error {
	var done bool
	if b.Audit != nil {
		err := b.retry(ctx, log, "refusal lookup", func() (err error) {
			done, err = b.Audit.RefusalRecorded(ctx, msg.Topic, msg.Partition, msg.Offset)
			return err
		})
		if err != nil {
			return err
		}
	}
	if done {
		log.Info("job refused before, already dead-lettered", "reason", r.reason, "stage", r.stage)
		return nil
	}
	var d audit.DeadLetter
	if err := b.retry(ctx, log, "dead letter", func() (err error) { d, err = b.deadLetter(msg, r); return err }); err != nil {
		return err
	}
	if b.Audit != nil {
		if err := b.retry(ctx, log, "refusal record", func() error { return b.Audit.RecordRefusal(ctx, d) }); err != nil {
			return err
		}
	}
	log.Warn("job refused", "reason", r.reason, "stage", r.stage, "job_id", r.jobID,
		"dlq_partition", d.Partition, "dlq_offset", d.Offset)
	metrics.Jobs.WithLabelValues("refused", r.source).Inc()
	return nil
}

// deadLetter writes msg to the dead-letter topic: the whole message if it fits, else its first
// TruncatedValueBytes, else no value at all (the headers still say what it was). It returns the row
// that describes what it wrote.
func (b *Bridge) deadLetter(msg *sarama.ConsumerMessage, r refusal) (audit.DeadLetter, error) {
	now := time.Now()
	var err error
	for _, limit := range []int{-1, TruncatedValueBytes, 0} {
		pm := b.dlqMessage(msg, r, limit)
		pm.Timestamp = now
		var p int32
		var o int64
		if p, o, err = b.DLQ.SendMessage(pm); err == nil {
			return b.refusalRow(msg, r, p, o, now, pm), nil
		}
		if !tooLarge(err) {
			return audit.DeadLetter{}, fmt.Errorf("dead-letter to %s: %w", b.DLQTopic, err)
		}
	}
	// Only a topic limit below a few hundred bytes gets here: wait for it to be fixed.
	return audit.DeadLetter{}, fmt.Errorf("dead-letter to %s, even without the message: %w", b.DLQTopic, err)
}

// dlqMessage is the dead letter of msg with at most limit bytes of its value (-1: all of it).
func (b *Bridge) dlqMessage(msg *sarama.ConsumerMessage, r refusal, limit int) *sarama.ProducerMessage {
	value, reason := msg.Value, r.reason
	truncated := limit >= 0 && (limit < len(value) || len(reason) > truncatedReasonBytes)
	if truncated {
		value = value[:min(limit, len(value))]
		reason = strings.ToValidUTF8(reason[:min(len(reason), truncatedReasonBytes)], "")
	}
	h := []sarama.RecordHeader{
		header(dlq.HeaderReason, reason),
		header(dlq.HeaderStage, r.stage),
		header(dlq.HeaderTopic, msg.Topic),
		header(dlq.HeaderPartition, strconv.Itoa(int(msg.Partition))),
		header(dlq.HeaderOffset, strconv.FormatInt(msg.Offset, 10)),
	}
	if r.jobID != "" {
		h = append(h, header(dlq.HeaderJobID, r.jobID), header(dlq.HeaderWorkflowID, r.workflowID),
			header(dlq.HeaderSource, r.source))
	}
	if truncated {
		sum := sha256.Sum256(msg.Value)
		h = append(h, header(dlq.HeaderTruncated, "true"), header(dlq.HeaderOriginalSize, strconv.Itoa(len(msg.Value))),
			header(dlq.HeaderOriginalHash, hex.EncodeToString(sum[:])))
	}
	return &sarama.ProducerMessage{Topic: b.DLQTopic, Key: keyEncoder(msg.Key), Value: sarama.ByteEncoder(value), Headers: h}
}

// refusalRow is the audit row of the dead letter pm, written at partition p, offset o.
func (b *Bridge) refusalRow(msg *sarama.ConsumerMessage, r refusal, p int32, o int64, at time.Time, pm *sarama.ProducerMessage) audit.DeadLetter {
	value, _ := pm.Value.Encode()
	d := audit.DeadLetter{Topic: b.DLQTopic, Partition: p, Offset: o, Key: msg.Key, Value: value, Reason: r.reason,
		Stage: r.stage, OriginTopic: &msg.Topic, OriginPartition: &msg.Partition, OriginOffset: &msg.Offset, PublishedAt: at}
	// The job id as the dashboard's indexer reads it: the header, else the message key.
	if id := r.jobID; id != "" {
		d.JobID, d.WorkflowID, d.Source = &id, &r.workflowID, &r.source
	} else if len(msg.Key) > 0 {
		k := string(msg.Key)
		d.JobID = &k
	}
	return d
}

func header(k, v string) sarama.RecordHeader {
	return sarama.RecordHeader{Key: []byte(k), Value: []byte(v)}
}

func keyEncoder(k []byte) sarama.Encoder {
	if k == nil {
		return nil
	}
	return sarama.ByteEncoder(k)
}

// tooLarge tells whether the producer or the broker refused a message for its size. sarama checks
// Producer.MaxMessageBytes itself and reports it as a ConfigurationError, not as
// ErrMessageSizeTooLarge (the broker's answer).
func tooLarge(err error) bool {
	var ce sarama.ConfigurationError
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) ||
		errors.As(err, &ce) && strings.Contains(string(ce), "MaxMessageBytes")
}

// refusedForGood tells whether Temporal refused a start in a way a retry cannot fix: an invalid
// request (an unregistered search attribute, a payload over the server's limit) or a request over
// the gRPC message limit. Unavailable, deadlines, rate limits and unknown namespaces are retried.
func refusedForGood(err error) bool {
	st := serviceerror.ToStatus(err)
	return st.Code() == codes.InvalidArgument ||
		st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max")
}
