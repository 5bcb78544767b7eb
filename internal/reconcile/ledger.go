package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/IBM/sarama"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
)

// MaxMessages bounds the messages one reconciliation reads: a wider window is refused.
const MaxMessages = 1_000_000

// batchSize is how many messages are looked up in the audit store at once.
const batchSize = 500

// FromKafka reads the messages group consumed from topic.
func FromKafka(k *kafkaops.Kafka, topic, group string) Messages {
	return func(ctx context.Context, since time.Time, f func(Message) error) error {
		return k.Consumed(ctx, topic, group, since, MaxMessages, func(m *sarama.ConsumerMessage) error {
			return f(Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value})
		})
	}
}

// ledger accounts for consumed messages, a batch at a time.
type ledger struct {
	o         Options
	differing map[string]bool // SUCCEEDED jobs whose object differs
	lines     map[[2]string]*Line
	seen      map[string]bool // jobs already counted
	diffs     []Difference
	batch     []Message
}

func (l *ledger) read(ctx context.Context, since time.Time) error {
	err := l.o.Messages(ctx, since, func(m Message) error {
		if l.batch = append(l.batch, m); len(l.batch) < batchSize {
			return nil
		}
		return l.flush(ctx)
	})
	if err != nil {
		return fmt.Errorf("consumed messages: %w", err)
	}
	return l.flush(ctx)
}

// parsed is a message read as the bridge reads it.
type parsed struct {
	job job.Job
	err error
}

// flush looks the batch's jobs and dead letters up and counts each message.
func (l *ledger) flush(ctx context.Context) error {
	if len(l.batch) == 0 {
		return nil
	}
	ps := make([]parsed, len(l.batch))
	ids := make([]string, 0, len(l.batch))
	refs := make([]audit.MessageRef, len(l.batch))
	for i, m := range l.batch {
		ps[i].job, ps[i].err = l.o.Policy.Parse(m.Key, m.Value)
		if ps[i].err == nil {
			ids = append(ids, ps[i].job.ID)
		}
		refs[i] = audit.MessageRef{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	}
	statuses, err := l.o.Store.JobStatuses(ctx, ids)
	if err != nil {
		return err
	}
	dead, err := l.o.Store.DeadLettered(ctx, refs)
	if err != nil {
		return err
	}
	for i, m := range l.batch {
		if err := l.count(ctx, m, ps[i], statuses, dead[refs[i]]); err != nil {
			return err
		}
	}
	l.batch = l.batch[:0]
	return nil
}

// count puts one message on its line of the ledger.
func (l *ledger) count(ctx context.Context, m Message, p parsed, statuses map[string]string, deadLettered bool) error {
	source := ""
	if p.err == nil {
		source = p.job.SourceName()
	}
	line := l.line(m.Topic, source)
	line.Consumed++
	if p.err != nil {
		if deadLettered {
			line.DeadLettered++
			return nil
		}
		line.Differing++
		l.differ(m, MessageWithoutWorkflow, "", fmt.Sprintf("the message is not a valid job (%v) and no dead letter records it", p.err))
		return nil
	}
	id := p.job.ID
	if l.seen[id] {
		line.Redelivered++
		return nil
	}
	l.seen[id] = true
	switch status := statuses[id]; {
	case status == audit.StatusSucceeded && l.differing[id]:
		line.Differing++ // listed by the object check
	case status == audit.StatusSucceeded:
		line.Archived++
	case status == audit.StatusDeadLettered || status == "" && deadLettered:
		line.DeadLettered++
	case status == audit.StatusFailed:
		line.Differing++
		l.differ(m, FailedWithoutDeadLetter, id, fmt.Sprintf("job %s failed and its dead letter was not published", id))
	case status != "":
		line.InFlight++
	default:
		return l.withoutRow(ctx, m, p.job, line)
	}
	return nil
}

// withoutRow counts a valid message whose job has no audit row: its workflow may not have written
// one yet.
func (l *ledger) withoutRow(ctx context.Context, m Message, j job.Job, line *Line) error {
	if l.o.Running != nil {
		running, err := l.o.Running(ctx, j.WorkflowID())
		if err != nil {
			return fmt.Errorf("workflow %s: %w", j.WorkflowID(), err)
		}
		if running {
			line.InFlight++
			return nil
		}
	}
	line.Differing++
	l.differ(m, MessageWithoutWorkflow, j.ID, fmt.Sprintf("the message was consumed, but job %s has no audit row, no running workflow %s and no dead letter",
		j.ID, j.WorkflowID()))
	return nil
}

func (l *ledger) differ(m Message, kind, jobID, detail string) {
	p, off := m.Partition, m.Offset
	l.diffs = append(l.diffs, Difference{Kind: kind, JobID: jobID, Topic: m.Topic, Partition: &p, Offset: &off, Detail: detail})
}

func (l *ledger) line(topic, source string) *Line {
	k := [2]string{topic, source}
	if l.lines[k] == nil {
		l.lines[k] = &Line{Topic: topic, Source: source}
	}
	return l.lines[k]
}

// sorted returns the lines by topic and source.
func (l *ledger) sorted() []Line {
	out := make([]Line, 0, len(l.lines))
	for _, line := range l.lines {
		out = append(out, *line)
	}
	sort.Slice(out, func(i, k int) bool {
		return out[i].Topic < out[k].Topic || out[i].Topic == out[k].Topic && out[i].Source < out[k].Source
	})
	return out
}

// ForConfig reconciles a deployment as cfg describes it: the bridge's group on the jobs topic,
// the job policy the bridge parses with, and Temporal's running workflows.
func ForConfig(cfg config.Config, store *audit.Store, s3c *s3.Client, kc *kafkaops.Kafka, tc client.Client) Options {
	return Options{Store: store, S3: s3c, Messages: FromKafka(kc, cfg.Kafka.JobsTopic, cfg.Kafka.Group),
		Policy: cfg.JobPolicy(), Running: FromTemporal(tc)}
}

// FromTemporal reports whether a workflow's current run is open.
func FromTemporal(c client.Client) func(ctx context.Context, workflowID string) (bool, error) {
	return func(ctx context.Context, workflowID string) (bool, error) {
		d, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
	}
}
