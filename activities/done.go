package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/audit"
)

// HeaderEventID carries a done event's id: the workflow run that archived the job. A consumer that
// sees one id twice (a send repeated after its acknowledgement was lost) keeps the first.
const HeaderEventID = "event_id"

// DoneEvent is the message on kafka.done_topic for each archived job, keyed by its job id: the
// claim check for the file.
type DoneEvent struct {
	JobID      string    `json:"job_id"`
	Source     string    `json:"source"`
	RemotePath string    `json:"remote_path"`
	Size       int64     `json:"size"`
	MD5        string    `json:"md5"`
	Bucket     string    `json:"bucket"`
	Key        string    `json:"key"`
	VersionID  string    `json:"version_id,omitempty"`
	ETag       string    `json:"etag"`
	FinishedAt time.Time `json:"finished_at"`
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
}

// DoneInput is a done event and the audit event that records it was sent.
type DoneInput struct {
	Event  DoneEvent
	Record audit.Event
}

// PublishDone sends the done event, then records that it did, as an event that leaves the
// finished job's row as it is. The producer is idempotent, so its own retries never repeat the
// message; only a retry of this activity after a lost acknowledgement can, with the same event id.
func (a *Transfer) PublishDone(ctx context.Context, in DoneInput) error {
	value, err := json.Marshal(in.Event)
	if err != nil {
		return err
	}
	msg := &sarama.ProducerMessage{Topic: a.DoneTopic, Key: sarama.ByteEncoder(in.Event.JobID), Value: sarama.ByteEncoder(value),
		Headers: []sarama.RecordHeader{{Key: []byte(HeaderEventID), Value: []byte(in.Event.RunID)}}}
	p, o, err := a.Producer.SendMessage(msg)
	if err != nil {
		return fmt.Errorf("done event of %s to %s: %w", in.Event.JobID, a.DoneTopic, err)
	}
	in.Record.Detail = fmt.Sprintf("done event at %s/%d/%d", a.DoneTopic, p, o)
	_, err = a.Audit.RecordAfter(ctx, []audit.Event{in.Record})
	return err
}
