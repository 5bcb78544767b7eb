// Package e2e tests the whole pipeline through real servers: a Kafka-protocol broker, Temporal,
// SFTP, S3 and PostgreSQL, with the bridge and workers of kafkasync in between.
package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
	"github.com/kafkasync/kafkasync/workflows"
)

// pipeline runs a worker and the bridge in process until the test ends.
type pipeline struct {
	env    *testenv.Env
	client client.Client
	store  *audit.Store
	prod   sarama.SyncProducer

	mu     sync.Mutex
	starts map[string][]bool // per job: the bridge's duplicate flag of each accepted start
}

func startPipeline(t *testing.T, env *testenv.Env, withWorker bool) *pipeline {
	t.Helper()
	cfg := env.Cfg
	log := env.Logger(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	c, err := workers.Dial(ctx, cfg.Temporal, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	store, err := audit.Open(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	prod, err := kafkaconn.NewProducer(cfg.Kafka, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	if withWorker {
		tr, closeT, err := workers.NewTransfer(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer closeT()
			if err := workers.Run(ctx, c, cfg.Temporal.TaskQueue, tr, time.Second); err != nil {
				t.Errorf("worker: %v", err)
			}
		}()
	}
	p := &pipeline{env: env, client: c, store: store, prod: prod, starts: map[string][]bool{}}
	b := &starter.Bridge{Temporal: c, TaskQueue: cfg.Temporal.TaskQueue, Options: starter.WorkflowOptions(cfg),
		DLQ: prod, DLQTopic: cfg.Kafka.DLQTopic, Logger: log, Backoff: time.Second, Sources: starter.Targets(cfg), Audit: store,
		OnStarted: func(id string, dup bool) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.starts[id] = append(p.starts[id], dup)
		}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := starter.Run(ctx, cfg.Kafka.Brokers, cfg.Kafka.Group, cfg.Kafka.JobsTopic, starter.ConsumerConfig("e2e", time.Second), b); err != nil {
			t.Errorf("bridge: %v", err)
		}
	}()
	return p
}

func (p *pipeline) publish(t *testing.T, key, value string) {
	t.Helper()
	var k sarama.Encoder
	if key != "" {
		k = sarama.StringEncoder(key)
	}
	if _, _, err := p.prod.SendMessage(&sarama.ProducerMessage{Topic: p.env.Cfg.Kafka.JobsTopic, Key: k, Value: sarama.StringEncoder(value)}); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the job's workflow to exist and end.
func (p *pipeline) wait(ctx context.Context, id string) (workflows.Result, error) {
	var r workflows.Result
	for {
		err := p.client.GetWorkflow(ctx, job.Job{ID: id}.WorkflowID(), "").Get(ctx, &r)
		if err == nil || ctx.Err() != nil || !isNotFound(err) {
			return r, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type fileJob struct {
	id, path, md5 string
	size          int64
}

func TestPipelineEndToEnd(t *testing.T) {
	// What users run: Apache Kafka, and the Temporal server on PostgreSQL with SQL visibility, whose
	// search attributes devstack registers as setup-temporal does (searchattr.Register).
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaApache, Temporal: devstack.TemporalServer})
	p := startPipeline(t, env, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// 20 files from 0 bytes to 64 MiB.
	sizes := []int64{0, 1, 2, 1000, 4096, 65535, 65536, 100_000, 1 << 20, (1 << 20) + 1, 3 << 20, 5 << 20,
		(5 << 20) + 17, 8 << 20, 10 << 20, 16 << 20, 20<<20 + 3, 32 << 20, 48 << 20, 64 << 20}
	var good []fileJob
	for i, size := range sizes {
		path := fmt.Sprintf("/in/batch-%02d/file-%02d.bin", i%3, i)
		sum := env.WriteFile(t, path[1:], size, uint64(i+1))
		good = append(good, fileJob{id: fmt.Sprintf("good-%02d", i), path: path, md5: sum, size: size})
	}
	badSum := env.WriteFile(t, "in/wrong-md5.bin", 3<<20, 999)
	wrongMD5 := "00000000000000000000000000000000"
	if badSum == wrongMD5 {
		t.Fatal("impossible checksum")
	}

	start := time.Now()
	for _, j := range good {
		p.publish(t, j.id, fmt.Sprintf(`{"id":%q,"remote_path":%q,"md5":%q,"size":%d}`, j.id, j.path, j.md5, j.size))
	}
	p.publish(t, "wrong-md5", `{"remote_path":"/in/wrong-md5.bin","md5":"`+wrongMD5+`"}`)
	p.publish(t, "malformed", `{"remote_path":"../../etc/passwd","md5":"x"}`)
	// A redelivered job must not start a second transfer.
	p.publish(t, good[5].id, fmt.Sprintf(`{"id":%q,"remote_path":%q,"md5":%q,"size":%d}`, good[5].id, good[5].path, good[5].md5, good[5].size))

	var bytes int64
	for _, j := range good {
		r, err := p.wait(ctx, j.id)
		if err != nil {
			t.Fatalf("job %s: %v", j.id, err)
		}
		if r.MD5 != j.md5 || r.Size != j.size || r.Key != j.path[1:] {
			t.Fatalf("job %s result %+v, want md5 %s size %d", j.id, r, j.md5, j.size)
		}
		bytes += j.size
		if j.size == 64<<20 {
			t.Logf("64 MiB download: %.1f MB/s over %d connections (%.3fs)", r.Download.BytesPerSec/1e6, r.Download.Connections, r.Download.Seconds)
		}
	}
	elapsed := time.Since(start)
	t.Logf("20 jobs, %d MiB in all, end to end in %s", bytes>>20, elapsed.Round(time.Millisecond))

	saveHistory(t, ctx, p.client, job.Job{ID: good[5].id}.WorkflowID())  // a small file: one local activity
	saveHistory(t, ctx, p.client, job.Job{ID: good[13].id}.WorkflowID()) // 8 MiB: four activities

	_, err := p.wait(ctx, "wrong-md5")
	saveHistory(t, ctx, p.client, "file-wrong-md5")
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != activities.ErrTypeChecksumMismatch {
		t.Fatalf("wrong-md5 job: got %v, want a ChecksumMismatch failure", err)
	}

	// Every good file is in S3 with the right bytes and its MD5 as metadata.
	s3c := env.Stack.S3.Client()
	objectMD5 := map[string]string{}
	for _, j := range good {
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env.Cfg.S3.Bucket), Key: aws.String(j.path[1:])})
		if err != nil {
			t.Fatalf("get %s: %v", j.path, err)
		}
		h := md5.New()
		n, err := io.Copy(h, out.Body)
		out.Body.Close()
		if err != nil || n != j.size || hex.EncodeToString(h.Sum(nil)) != j.md5 {
			t.Fatalf("object %s: %d bytes md5 %x (err %v), want %d bytes md5 %s", j.path, n, h.Sum(nil), err, j.size, j.md5)
		}
		if out.Metadata[s3client.MetaMD5] != j.md5 {
			t.Fatalf("object %s metadata %v", j.path, out.Metadata)
		}
		objectMD5[j.id] = hex.EncodeToString(h.Sum(nil))
	}

	// The audit table: exactly one SUCCEEDED row per good job, the bad one DEAD_LETTERED, no other row.
	rows, err := p.store.Pool().Query(ctx, `SELECT job_id, status, md5_expected, md5_actual, size_bytes FROM jobs ORDER BY job_id`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	actual := map[string]string{}
	for rows.Next() {
		var id, status string
		var md5Expected, md5Actual *string
		var size *int64
		if err := rows.Scan(&id, &status, &md5Expected, &md5Actual, &size); err != nil {
			t.Fatal(err)
		}
		got[id] = status
		if status == audit.StatusSucceeded && (md5Expected == nil || md5Actual == nil || *md5Expected != *md5Actual) {
			t.Fatalf("audit %s: md5_expected %v, md5_actual %v", id, md5Expected, md5Actual)
		}
		if md5Actual != nil {
			actual[id] = *md5Actual
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != len(good)+1 {
		t.Fatalf("audit has %d jobs, want %d: %v", len(got), len(good)+1, got)
	}
	for _, j := range good {
		if got[j.id] != audit.StatusSucceeded {
			t.Fatalf("audit %s = %q, want SUCCEEDED", j.id, got[j.id])
		}
	}
	// md5_expected = md5_actual = the object's metadata = the md5 of its bytes, for every job.
	for _, j := range good {
		if actual[j.id] != objectMD5[j.id] {
			t.Fatalf("job %s: md5_actual %s, object bytes %s", j.id, actual[j.id], objectMD5[j.id])
		}
	}
	// Each job's trail names its stat and the check of its object; the failed verify attempt of
	// the wrong-md5 job has a row of its own.
	for _, q := range []struct {
		sql  string
		want int
	}{
		{`SELECT count(*) FROM job_events WHERE step = 'stat' AND outcome = 'succeeded' AND detail LIKE '% bytes, modified %'`, len(good) + 1},
		{`SELECT count(*) FROM job_events WHERE step = 'upload' AND outcome = 'succeeded' AND detail LIKE '%object verified: %'`, len(good)},
		{`SELECT count(*) FROM job_events WHERE job_id = 'wrong-md5' AND seq = 0 AND step = 'verify' AND outcome = 'failed' AND error LIKE 'md5 %'`, 2},
	} {
		var n int
		if err := p.store.Pool().QueryRow(ctx, q.sql).Scan(&n); err != nil || n != q.want {
			t.Fatalf("%s: %d (err %v), want %d", q.sql, n, err, q.want)
		}
	}
	// Nothing is left on the worker's disk.
	for _, dir := range []string{env.Cfg.Transfer.StagingDir, env.Cfg.Transfer.CompletedDir} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s holds %d entries after the run, e.g. %s", dir, len(entries), entries[0].Name())
		}
	}
	if got["wrong-md5"] != audit.StatusDeadLettered {
		t.Fatalf("audit wrong-md5 = %q, want DEAD_LETTERED", got["wrong-md5"])
	}
	var events int
	if err := p.store.Pool().QueryRow(ctx, `SELECT count(*) FROM job_events WHERE job_id = $1 AND step = 'upload' AND outcome = 'succeeded'`, good[5].id).Scan(&events); err != nil || events != 1 {
		t.Fatalf("redelivered job has %d upload events (err %v), want 1", events, err)
	}
	// The bridge counted the redelivery as a duplicate, whether the job was still running then or done.
	p.mu.Lock()
	starts := p.starts[good[5].id]
	p.mu.Unlock()
	if len(starts) != 2 || starts[0] || !starts[1] {
		t.Fatalf("bridge starts of the redelivered job (duplicate flags): %v, want [false true]", starts)
	}

	// The search attributes find the jobs in Temporal, as the Web UI and `temporal workflow list` do.
	for q, want := range map[string]int{
		`JobStatus = "SUCCEEDED" AND RemoteHost = "127.0.0.1"`:                                               len(good),
		`JobStatus = "DEAD_LETTERED" AND JobID = "wrong-md5"`:                                                1,
		`FileName = "` + path.Base(good[7].path) + `" AND FileSize = ` + strconv.FormatInt(good[7].size, 10): 1,
	} {
		var n int
		for range 150 { // visibility lags the workflows by up to a second per history shard
			resp, err := p.client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
			if err != nil {
				t.Fatalf("count %s: %v", q, err)
			}
			if n = int(resp.GetCount()); n == want {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n != want {
			t.Errorf("workflows where %s: %d, want %d", q, n, want)
		}
	}

	// The dead-letter topic holds the malformed message and the wrong-md5 job, and nothing else.
	dl := readTopic(t, env.Cfg, env.Cfg.Kafka.DLQTopic, 2, 5*time.Second)
	if len(dl) != 2 {
		t.Fatalf("dead-letter topic has %d messages, want 2: %v", len(dl), dl)
	}
	byKey := map[string]map[string]string{}
	for _, m := range dl {
		byKey[m.key] = m.headers
	}
	if h := byKey["malformed"]; h == nil || h["stage"] != "validate" || h["reason"] == "" || h["original_topic"] != env.Cfg.Kafka.JobsTopic {
		t.Fatalf("malformed message dead letter: %v", byKey)
	}
	if h := byKey["wrong-md5"]; h == nil || h["stage"] != "verify" || h["error_type"] != activities.ErrTypeChecksumMismatch || h["workflow_id"] != "file-wrong-md5" {
		t.Fatalf("wrong-md5 dead letter: %v", byKey)
	}
	checkDoneEvents(t, ctx, p, env.Cfg, len(good))

	checkLedger(t, ctx, p, int64(len(good)), 2)
}

// checkLedger: every message the bridge consumed is accounted for (once its offsets are committed),
// every SUCCEEDED job's object is there with its MD5, and nothing differs.
func checkLedger(t *testing.T, ctx context.Context, p *pipeline, archived, dead int64) {
	t.Helper()
	cfg := p.env.Cfg
	s3c, err := s3client.New(cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kafkaops.Dial(cfg.Kafka.Brokers, "e2e-ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	o := reconcile.ForConfig(cfg, p.store, s3c, kc, p.client)
	var rec reconcile.Report
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if rec, err = reconcile.Check(ctx, o, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		var a, d int64
		for _, l := range rec.Ledger {
			a, d = a+l.Archived, d+l.DeadLettered
		}
		if a == archived && d == dead || time.Now().After(deadline) {
			break
		}
	}
	var a, d, other int64
	for _, l := range rec.Ledger {
		a, d, other = a+l.Archived, d+l.DeadLettered, other+l.InFlight+l.Differing
		if l.Consumed != l.Archived+l.DeadLettered+l.InFlight+l.Redelivered+l.Differing {
			t.Fatalf("ledger line does not balance: %+v", l)
		}
	}
	if a != archived || d != dead || other != 0 || rec.Checked != int(archived) || len(rec.Differences) != 0 {
		t.Fatalf("reconcile after the run: %+v, want %d archived and %d dead-lettered", rec, archived, dead)
	}
	t.Logf("ledger: %+v", rec.Ledger)
}

// checkDoneEvents: the done topic holds one event per SUCCEEDED row, with that row's fields.
func checkDoneEvents(t *testing.T, ctx context.Context, p *pipeline, cfg config.Config, want int) {
	t.Helper()
	msgs := readTopic(t, cfg, cfg.Kafka.DoneTopic, want, 3*time.Second)
	if len(msgs) != want {
		t.Fatalf("done topic has %d messages, want %d (one per SUCCEEDED job)", len(msgs), want)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		var ev activities.DoneEvent
		if err := json.Unmarshal([]byte(m.value), &ev); err != nil {
			t.Fatalf("done event %s: %v", m.value, err)
		}
		var status, md5, bucket, key, runID string
		var size int64
		err := p.store.Pool().QueryRow(ctx, `SELECT status, md5_actual, s3_bucket, s3_key, size_bytes, run_id FROM jobs WHERE job_id = $1`,
			ev.JobID).Scan(&status, &md5, &bucket, &key, &size, &runID)
		if err != nil || status != "SUCCEEDED" || m.key != ev.JobID || seen[ev.JobID] || ev.MD5 != md5 || ev.Bucket != bucket ||
			ev.Key != key || ev.Size != size || ev.RunID != runID || m.headers[activities.HeaderEventID] != runID || ev.ETag == "" ||
			ev.Source != "default" || ev.FinishedAt.IsZero() {
			t.Fatalf("done event %s (key %s, headers %v) against its row: %s %s %s %s %d %s %v", m.value, m.key, m.headers,
				status, md5, bucket, key, size, runID, err)
		}
		seen[ev.JobID] = true
	}
	var n int
	if err := p.store.Pool().QueryRow(ctx, `SELECT count(*) FROM job_events WHERE step = 'done_event' AND outcome = 'succeeded'`).Scan(&n); err != nil || n != want {
		t.Fatalf("%d done_event audit rows, want %d: %v", n, want, err)
	}
}

type dlMsg struct {
	key     string
	value   string
	headers map[string]string
}

func (m dlMsg) String() string { return fmt.Sprintf("%s=%s %v", m.key, m.value, m.headers) }

// readTopic reads topic from the start until want messages arrived and then quiet more passed
// with nothing new.
func readTopic(t *testing.T, cfg config.Config, topic string, want int, quiet time.Duration) []dlMsg {
	t.Helper()
	sc := sarama.NewConfig()
	c, err := sarama.NewConsumer(cfg.Kafka.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *sarama.ConsumerMessage, 100)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				msgs <- m
			}
		}()
	}
	var out []dlMsg
	deadline := time.After(30 * time.Second)
	for {
		timeout := quiet
		if len(out) < want {
			timeout = 30 * time.Second
		}
		select {
		case m := <-msgs:
			h := map[string]string{}
			for _, rh := range m.Headers {
				h[string(rh.Key)] = string(rh.Value)
			}
			out = append(out, dlMsg{key: string(m.Key), value: string(m.Value), headers: h})
		case <-time.After(timeout):
			return out
		case <-deadline:
			return out
		}
	}
}
