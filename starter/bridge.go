// Package starter is the Kafka bridge: a sarama consumer group that validates each job message and
// starts one FileTransfer workflow per job, and the client that submits jobs.
package starter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/searchattr"
	"github.com/kafkasync/kafkasync/internal/startreport"
	"github.com/kafkasync/kafkasync/workflows"
)

// Dead-letter stages of the messages the bridge refuses.
const (
	StageValidate = audit.StageValidate // the message is not a valid job
	StageStart    = audit.StageStart    // Temporal refused the job's start for good
)

// WorkflowStarter is the part of the Temporal client the bridge uses.
type WorkflowStarter interface {
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
}

// Bridge turns job messages into workflows. It implements sarama.ConsumerGroupHandler. A message's
// offset is marked only after Temporal accepted the start (or the dead-letter write succeeded), so
// nothing is lost when the bridge dies; the workflow ID derived from the job ID makes redelivery
// harmless.
type Bridge struct {
	Temporal  WorkflowStarter
	TaskQueue string
	Options   workflows.Options
	DLQ       sarama.SyncProducer
	DLQTopic  string
	Logger    *slog.Logger
	// InFlight is how many messages of one partition are being started at once (0: one).
	InFlight int
	// Backoff bounds the wait between retries while Temporal or the dead-letter topic is unreachable.
	Backoff time.Duration
	// Sources says, per source name, where its jobs' files are and go; a job of a source not
	// listed goes to Options.Bucket with no RemoteHost search attribute.
	Sources map[string]Target
	// Policy holds the deployment's limits on paths and keys, applied at validation.
	Policy job.Policy
	// OnStarted, when set, is called after each accepted start (for metrics and tests).
	OnStarted func(jobID string, duplicate bool)
	// Audit records each message the bridge dead-letters; nil records none (the dashboard's
	// indexer then adds them when it reads the dead-letter topic).
	Audit Refusals
}

// Refusals is the part of the audit store (*audit.Store) that records the bridge's dead letters.
type Refusals interface {
	RefusalRecorded(ctx context.Context, topic string, partition int32, offset int64) (bool, error)
	RecordRefusal(ctx context.Context, d audit.DeadLetter) error
}

// Setup implements sarama.ConsumerGroupHandler.
func (b *Bridge) Setup(sarama.ConsumerGroupSession) error { return nil }

// Cleanup implements sarama.ConsumerGroupHandler.
func (b *Bridge) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim handles one partition's messages, up to InFlight of them at once, on the goroutine
// sarama gives it. Offsets are marked in order: a message's only once it and every message before it
// were started or dead-lettered, so a bridge that dies loses nothing.
func (b *Bridge) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	window := make(chan struct{}, max(b.InFlight, 1))
	pending := make(chan *inFlight, cap(window))
	marked := make(chan struct{})
	go func() { defer close(marked); b.markInOrder(sess, claim, pending, window) }()
	defer func() { close(pending); <-marked }()
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			f := &inFlight{msg: msg, done: make(chan error, 1)}
			pending <- f // never blocks: pending holds as many as window
			go func() { f.done <- b.handle(ctx, msg) }()
		case <-ctx.Done():
			return nil
		}
	}
}

// inFlight is a message being started; done receives handle's result.
type inFlight struct {
	msg  *sarama.ConsumerMessage
	done chan error
}

// markInOrder marks each message of pending, in offset order, once it is handled. After one that
// was not (ctx ended) it marks none: their offsets would skip it. It returns when pending is closed
// and every message in it is handled.
func (b *Bridge) markInOrder(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, pending <-chan *inFlight, window <-chan struct{}) {
	stopped := false
	for f := range pending {
		err := <-f.done
		<-window
		if stopped = stopped || err != nil; stopped {
			continue // unmarked: redelivered to the next member
		}
		sess.MarkMessage(f.msg, "")
		metrics.BridgeLag.WithLabelValues(f.msg.Topic, strconv.Itoa(int(f.msg.Partition))).Set(float64(max(claim.HighWaterMarkOffset()-f.msg.Offset-1, 0)))
	}
}

// handle ends when the message is started, dead-lettered (and recorded), or ctx ends. A start
// Temporal refuses for good is dead-lettered; unreachable servers are retried with backoff.
func (b *Bridge) handle(ctx context.Context, msg *sarama.ConsumerMessage) error {
	log := b.Logger.With("topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
	j, verr := b.Policy.Parse(msg.Key, msg.Value)
	if verr != nil {
		return b.refuse(ctx, log, msg, refusal{reason: verr.Error(), stage: StageValidate})
	}
	var dup bool
	err := b.retry(ctx, log, "start", func() (err error) {
		dup, err = b.start(ctx, j, msg)
		return err
	})
	if errors.Is(err, errPermanent) {
		return b.refuse(ctx, log, msg, refusal{reason: err.Error(), stage: StageStart, jobID: j.ID, workflowID: j.WorkflowID(), source: j.SourceName()})
	}
	if err != nil {
		return err
	}
	log.Info("job started", "job_id", j.ID, "workflow_id", j.WorkflowID(), "duplicate", dup)
	if dup {
		metrics.Jobs.WithLabelValues("duplicate", j.SourceName()).Inc()
	} else {
		metrics.Jobs.WithLabelValues("started", j.SourceName()).Inc()
	}
	if b.OnStarted != nil {
		b.OnStarted(j.ID, dup)
	}
	return nil
}

// errPermanent marks an error a retry cannot fix.
var errPermanent = errors.New("refused for good")

// retry runs op until it succeeds, fails with errPermanent, or ctx ends (then it returns ctx's
// error), waiting 100 ms after the first failure and twice as long after each, up to Backoff.
func (b *Bridge) retry(ctx context.Context, log *slog.Logger, what string, op func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := op()
		if err == nil || errors.Is(err, errPermanent) {
			return err
		}
		log.Error(what+" not yet accepted, will retry", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, max(b.Backoff, time.Second))
	}
}

// start starts the job's workflow. duplicate is true when a run for this job already exists
// (running, or completed successfully). A running one is told apart only with a client dialed by
// workers.Dial (startreport.Interceptor); other clients count it as started.
func (b *Bridge) start(ctx context.Context, j job.Job, msg *sarama.ConsumerMessage) (duplicate bool, err error) {
	t := b.Sources[j.SourceName()]
	opts := StartOptions(b.TaskQueue, t, j, msg)
	in := workflows.Input{Job: j, Message: msg.Value, Key: msg.Key, SourceTopic: msg.Topic,
		SourcePartition: msg.Partition, SourceOffset: msg.Offset, Options: b.Options, Indexed: true, SubmittedBy: submittedBy(msg)}
	if t.Bucket != "" {
		in.Options.Bucket = t.Bucket
	}
	in.Options.OnSuccess, in.Options.OnFailure = t.OnSuccess, t.OnFailure
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	sctx, report := startreport.Watch(sctx)
	_, err = b.Temporal.ExecuteWorkflow(sctx, opts, workflows.Name, in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return true, nil // this job already succeeded: the message is a redelivery
	}
	if refusedForGood(err) {
		return false, fmt.Errorf("start workflow %s: %w: %w", opts.ID, errPermanent, err)
	}
	if err != nil {
		return false, fmt.Errorf("start workflow %s: %w", opts.ID, err)
	}
	if isNew, known := report(); known && !isNew {
		return true, nil // this job is running: the message is a redelivery
	}
	return false, nil
}

// submittedBy is the account the dashboard says submitted msg, at most 200 bytes of valid UTF-8.
func submittedBy(msg *sarama.ConsumerMessage) string {
	for _, h := range msg.Headers {
		if h != nil && string(h.Key) == job.HeaderSubmittedBy {
			v := h.Value[:min(len(h.Value), 200)]
			return strings.ToValidUTF8(string(v), "")
		}
	}
	return ""
}

// StartOptions are the options of a job's start: its workflow ID, indexed search attributes and
// summary. The start is eager: when this client runs a worker on the task queue, the server hands
// the first workflow task back with the start, without a trip through the task queue.
func StartOptions(taskQueue string, t Target, j job.Job, msg *sarama.ConsumerMessage) client.StartWorkflowOptions {
	opts := client.StartWorkflowOptions{
		ID:                       j.WorkflowID(),
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		// Without it the SDK hides the refusal to run a job that succeeded as if it had started.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		EnableEagerStart:                         true,
		StaticSummary:                            "file " + j.RemotePath,
		StaticDetails: fmt.Sprintf("job %s from %s partition %d offset %d; object key %s", j.ID, msg.Topic, msg.Partition,
			msg.Offset, j.Key()),
	}
	sa := []temporal.SearchAttributeUpdate{searchattr.JobID.ValueSet(j.ID), searchattr.FileName.ValueSet(path.Base(j.RemotePath)),
		searchattr.JobStatus.ValueSet(audit.StatusQueued), searchattr.Source.ValueSet(j.SourceName())}
	if t.Host != "" {
		sa = append(sa, searchattr.RemoteHost.ValueSet(t.Host))
	}
	if j.Size >= 0 {
		sa = append(sa, searchattr.FileSize.ValueSet(j.Size))
	}
	opts.TypedSearchAttributes = temporal.NewSearchAttributes(sa...)
	return opts
}

// ConsumerConfig returns the sarama config the bridge uses: start at the oldest offset of a new
// group, commit marked offsets every second.
func ConsumerConfig(clientID string, commitInterval time.Duration) *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = clientID
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = max(commitInterval, 100*time.Millisecond)
	sc.Consumer.Return.Errors = true
	return sc
}

// Run consumes topic in group until ctx ends, rejoining after every rebalance.
// The topics must exist: brokers that do not create topics on demand would leave the group
// waiting for one forever.
func Run(ctx context.Context, brokers []string, group, topic string, sc *sarama.Config, h *Bridge) error {
	cl, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: %w", group, err)
	}
	defer cl.Close()
	if err := requireTopics(cl, topic, h.DLQTopic); err != nil {
		return err
	}
	cg, err := sarama.NewConsumerGroupFromClient(group, cl)
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: %w", group, err)
	}
	defer cg.Close()
	go func() {
		for err := range cg.Errors() {
			h.Logger.Error("kafka consumer", "err", err)
		}
	}()
	for {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
				return nil
			}
			h.Logger.Error("kafka consume", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// ErrNoTopic marks a topic the brokers do not have.
var ErrNoTopic = errors.New("does not exist on the brokers: create it (kafkasync does not ask the brokers to create topics)")

func requireTopics(cl sarama.Client, topics ...string) error {
	have, err := cl.Topics()
	if err != nil {
		return fmt.Errorf("kafka topics: %w", err)
	}
	for _, t := range topics {
		if t != "" && !slices.Contains(have, t) {
			return fmt.Errorf("kafka topic %q %w", t, ErrNoTopic)
		}
	}
	return nil
}

// New builds the bridge the config describes.
func New(cfg config.Config, c WorkflowStarter, dlq sarama.SyncProducer, log *slog.Logger) *Bridge {
	return &Bridge{Temporal: c, TaskQueue: cfg.Temporal.TaskQueue, Options: WorkflowOptions(cfg), DLQ: dlq, InFlight: cfg.Kafka.StartsInFlight,
		DLQTopic: cfg.Kafka.DLQTopic, Logger: log, Backoff: 30 * time.Second, Sources: Targets(cfg), Policy: cfg.JobPolicy()}
}

// Target is where one source's jobs come from and go: the host of its SFTP server and its bucket.
type Target struct {
	Host   string
	Bucket string
	// OnSuccess and OnFailure are the source's actions on the remote file.
	OnSuccess, OnFailure config.Action
}

// Targets lists the Target of every source the config names.
func Targets(cfg config.Config) map[string]Target {
	out := map[string]Target{}
	for _, name := range cfg.SourceNames() {
		s, _ := cfg.Source(name)
		out[name] = Target{Host: hostOf(s.Address()), Bucket: cfg.BucketFor(s), OnSuccess: s.OnSuccessAction(), OnFailure: s.OnFailureAction()}
	}
	return out
}

// RunConfig runs b in the consumer group the config names until ctx ends.
func RunConfig(ctx context.Context, cfg config.Config, b *Bridge) error {
	sc := ConsumerConfig(cfg.Kafka.ClientID, cfg.Kafka.CommitInterval.D())
	if err := kafkaconn.Apply(sc, cfg.Kafka); err != nil {
		return err
	}
	return Run(ctx, cfg.Kafka.Brokers, cfg.Kafka.Group, cfg.Kafka.JobsTopic, sc, b)
}

// hostOf is the host part of host:port.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// WorkflowOptions are the per-run settings the bridge gives each workflow, taken from the config.
func WorkflowOptions(cfg config.Config) workflows.Options {
	t := cfg.Transfer
	return workflows.Options{
		MinAge: t.MinAge.D(), HeartbeatTimeout: t.HeartbeatTimeout.D(), HostTimeout: t.HostTimeout.D(),
		RetryInterval: t.RetryInterval.D(), MaxAttempts: t.MaxAttempts, VerifyAttempts: t.VerifyAttempts,
		HostMoves: t.HostMoves, RangeSize: int64(t.RangeSize), Connections: t.Connections, Bucket: cfg.S3.Bucket,
		SmallFile: int64(t.SmallFile),
	}
}
