package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"crypto/md5"
	"encoding/hex"
	"io"

	"github.com/IBM/sarama"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/dlq"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/internal/testproc"
	"github.com/kafkasync/kafkasync/workers"
)

// logsDir collects every log line kafkasync writes during the suite; the last test scans it for
// secrets.
var logsDir string

func TestMain(m *testing.M) {
	if code, ok := testproc.Child(); ok {
		os.Exit(code)
	}
	var err error
	if logsDir, err = os.MkdirTemp("", "kafkasync-faults-logs-"); err != nil {
		panic(err)
	}
	code := m.Run()
	if code == 0 {
		os.RemoveAll(logsDir)
	} else {
		fmt.Fprintln(os.Stderr, "fault suite logs kept in", logsDir)
	}
	os.Exit(code)
}

// want is what must become of one published job.
type want struct {
	key, md5 string // S3 key and MD5 of an archived job
	dead     bool   // on the dead-letter topic instead
	stage    string // the dead letter's stage
	reason   string // a part of the dead letter's reason
}

type suite struct {
	t     *testing.T
	env   *testenv.Env
	cfg   config.Config
	ctx   context.Context
	c     client.Client
	store *audit.Store
	prod  sarama.SyncProducer

	mu        sync.Mutex
	want      map[string]want
	refused   map[string]string // message key → part of the reason, for messages the bridge refuses
	published int
	replays   map[string]int // job id → extra workflow runs allowed (dead letters replayed)
	nlog      int
	// staging lists the staging folders that must end empty (default: cfg's).
	staging []string // the workers' staging and completed folders the ledger checks
	began   time.Time
}

// start runs the servers for a scenario of at most 8 minutes; tweak adjusts the config the workers
// and bridges get.
func start(t *testing.T, o testenv.Options, tweak func(*config.Config)) *suite {
	t.Helper()
	return startFor(t, 8*time.Minute, o, tweak)
}

// startFor is start for a scenario of at most timeout.
func startFor(t *testing.T, timeout time.Duration, o testenv.Options, tweak func(*config.Config)) *suite {
	t.Helper()
	env := testenv.Start(t, o)
	s := &suite{t: t, env: env, cfg: env.Cfg, want: map[string]want{}, refused: map[string]string{}, replays: map[string]int{},
		began: time.Now().Add(-time.Second)}
	s.cfg.Log.Level = "info"
	s.cfg.Transfer.StallTimeout = config.Duration(3 * time.Second)
	if tweak != nil {
		tweak(&s.cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	s.ctx = ctx
	log := env.Logger(t)
	var err error
	if s.c, err = workers.Dial(ctx, s.cfg.Temporal, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.c.Close)
	if s.store, err = audit.Open(ctx, s.cfg.Postgres.DSN.Reveal()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.store.Close)
	if _, err := s.store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if s.prod, err = kafkaconn.NewProducer(s.cfg.Kafka, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.prod.Close() })
	return s
}

// logFile is a file in the suite's log folder for one process's output.
func (s *suite) logFile(name string) *os.File {
	s.t.Helper()
	s.mu.Lock()
	s.nlog++
	n := s.nlog
	s.mu.Unlock()
	f, err := os.Create(filepath.Join(logsDir, fmt.Sprintf("%s-%s-%d.log", strings.ReplaceAll(s.t.Name(), "/", "_"), name, n)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { f.Close() })
	return f
}

func (s *suite) worker(cfg config.Config) *testproc.Proc {
	p, _ := s.run(testproc.Worker, cfg)
	return p
}

func (s *suite) bridge(cfg config.Config) *testproc.Proc {
	p, _ := s.run(testproc.Bridge, cfg)
	return p
}

// run starts a worker or bridge process and returns it with the file that receives its log.
func (s *suite) run(role string, cfg config.Config) (*testproc.Proc, string) {
	f := s.logFile(role)
	return testproc.Start(s.t, role, cfg, f), f.Name()
}

func (s *suite) publishRaw(key, value []byte) {
	s.t.Helper()
	msg := &sarama.ProducerMessage{Topic: s.cfg.Kafka.JobsTopic, Value: sarama.ByteEncoder(value)}
	if key != nil {
		msg.Key = sarama.ByteEncoder(key)
	}
	if _, _, err := s.prod.SendMessage(msg); err != nil {
		s.t.Fatalf("publish %q: %v", key, err)
	}
	s.mu.Lock()
	s.published++
	s.mu.Unlock()
}

// job writes a file of size bytes on the SFTP server and publishes a job for it that must archive.
func (s *suite) job(id, rel string, size int64, seed uint64) want {
	s.t.Helper()
	sum := s.env.WriteFile(s.t, rel, size, seed)
	w := want{key: rel, md5: sum}
	s.mu.Lock()
	s.want[id] = w
	s.mu.Unlock()
	s.publishRaw([]byte(id), fmt.Appendf(nil, `{"id":%q,"remote_path":"/%s","md5":%q,"size":%d}`, id, rel, sum, size))
	return w
}

// expectDead records that job id must end on the dead-letter topic at stage, with reason in its reason.
func (s *suite) expectDead(id, stage, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want[id] = want{dead: true, stage: stage, reason: reason}
}

// refuse publishes a message the bridge must dead-letter at stage validate.
func (s *suite) refuse(key string, value []byte, reason string) {
	s.t.Helper()
	s.mu.Lock()
	if _, dup := s.refused[key]; dup {
		s.mu.Unlock()
		s.t.Fatalf("two refused messages keyed %q", key)
	}
	s.refused[key] = reason
	s.mu.Unlock()
	s.publishRaw([]byte(key), value)
}

// wait blocks until every expected job is finished in the audit table and the dead-letter topic
// holds as many messages as expected.
func (s *suite) wait(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pending := s.pending()
		dl := len(testenv.ReadTopic(s.t, s.cfg.Kafka.Brokers, s.cfg.Kafka.DLQTopic))
		wantDL := len(s.refused)
		for _, w := range s.want {
			if w.dead {
				wantDL++
			}
		}
		if len(pending) == 0 && dl >= wantDL {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after %s: %d jobs unfinished %v; %d of %d dead letters", timeout, len(pending), first(pending, 10), dl, wantDL)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *suite) pending() []string {
	var out []string
	for id, w := range s.want {
		j, err := s.store.Job(s.ctx, id)
		done := err == nil && ((!w.dead && j.Status == audit.StatusSucceeded) || (w.dead && j.Status == audit.StatusDeadLettered))
		if !done {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// ledger checks that what was published balances what exists, and logs the counts.
func (s *suite) ledger() {
	t := s.t
	t.Helper()
	ctx := s.ctx
	archived, dead := 0, 0
	for _, w := range s.want {
		if w.dead {
			dead++
		} else {
			archived++
		}
	}

	// S3: exactly the archived jobs' objects, each with its MD5 stored and its bytes hashing to it,
	// and no open multipart upload.
	cl := s.env.Stack.S3.Client()
	objects := map[string]string{}
	p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.S3.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			stored, bytesMD5 := objectMD5(t, ctx, cl, s.cfg.S3.Bucket, aws.ToString(o.Key))
			if stored != bytesMD5 {
				t.Errorf("object %s: stored md5 %s, its bytes hash to %s", aws.ToString(o.Key), stored, bytesMD5)
			}
			objects[aws.ToString(o.Key)] = stored
		}
	}
	for id, w := range s.want {
		if !w.dead && objects[w.key] != w.md5 {
			t.Errorf("job %s: object %s has md5 %q, want %s", id, w.key, objects[w.key], w.md5)
		}
	}
	if len(objects) != archived {
		t.Errorf("%d objects in S3, want %d", len(objects), archived)
	}
	mpu, err := cl.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.S3.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mpu.Uploads); n != 0 {
		t.Errorf("%d incomplete multipart uploads left in the bucket", n)
	}

	// The dead-letter topic: each dead job once, each refused message once, nothing else.
	dls := testenv.ReadTopic(t, s.cfg.Kafka.Brokers, s.cfg.Kafka.DLQTopic)
	seen := map[string]int{}
	for _, m := range dls {
		h := headers(m)
		id := h[dlq.HeaderJobID]
		if id == "" {
			id = string(m.Key)
		}
		seen[id]++
		if reason, ok := s.refused[string(m.Key)]; ok && h[dlq.HeaderJobID] == "" {
			if h[dlq.HeaderStage] != "validate" || !strings.Contains(h[dlq.HeaderReason], reason) {
				t.Errorf("refused message %q: stage %q reason %q, want validate and %q", m.Key, h[dlq.HeaderStage], h[dlq.HeaderReason], reason)
			}
			continue
		}
		w, ok := s.want[id]
		switch {
		case !ok || !w.dead:
			t.Errorf("unexpected dead letter %q: %v", id, h)
		case h[dlq.HeaderStage] != w.stage || !strings.Contains(h[dlq.HeaderReason]+" "+h[dlq.HeaderErrorType], w.reason):
			t.Errorf("dead letter %s: stage %q reason %q, want %s and %q", id, h[dlq.HeaderStage], h[dlq.HeaderReason], w.stage, w.reason)
		}
	}
	for id, n := range seen {
		if n != 1+s.replays[id] {
			t.Errorf("%s is on the dead-letter topic %d times", id, n)
		}
	}
	if want := dead + len(s.refused); len(dls) != want+sum(s.replays) {
		t.Errorf("%d dead letters, want %d", len(dls), want)
	}

	// Audit: one row per job in the right status; one successful upload event per archived job.
	succeeded := 0
	for id, w := range s.want {
		var status string
		var uploads int
		err := s.store.Pool().QueryRow(ctx, `SELECT status, (SELECT count(*) FROM job_events e WHERE e.job_id = j.job_id AND step = 'upload' AND outcome = 'succeeded')
			FROM jobs j WHERE job_id = $1`, id).Scan(&status, &uploads)
		if err != nil {
			t.Errorf("audit row of %s: %v", id, err)
			continue
		}
		if w.dead {
			if status != audit.StatusDeadLettered || uploads != 0 {
				t.Errorf("audit %s: %s with %d uploads, want DEAD_LETTERED", id, status, uploads)
			}
		} else if status != audit.StatusSucceeded || uploads != 1 {
			t.Errorf("audit %s: %s with %d upload events, want SUCCEEDED and 1", id, status, uploads)
		} else {
			succeeded++
		}
	}
	var rows int
	if err := s.store.Pool().QueryRow(ctx, `SELECT count(*) FROM jobs`).Scan(&rows); err != nil || rows != len(s.want) {
		t.Errorf("audit has %d job rows (%v), want %d", rows, err, len(s.want))
	}

	// Temporal: one workflow run per job, once the visibility store, which lags the workflows, lists
	// them all, and one lag later, so that a run too many would be listed too.
	s.waitFor("the visibility store to list every run", 30*time.Second, func() bool { return s.runsListed(s.listRuns(ctx)) })
	time.Sleep(visibilityLag)
	runs := s.listRuns(ctx)
	for id := range s.want {
		if n := runs["file-"+id]; n != 1+s.replays[id] {
			t.Errorf("job %s has %d workflow runs, want %d", id, n, 1+s.replays[id])
		}
	}
	if len(runs) != len(s.want) {
		t.Errorf("%d workflows, want %d", len(runs), len(s.want))
	}

	// Staging and completed: nothing left behind.
	dirs := s.staging
	if len(dirs) == 0 {
		dirs = []string{s.cfg.Transfer.StagingDir, s.cfg.Transfer.CompletedDir}
	}
	var left []string
	for _, d := range dirs {
		l, _ := filepath.Glob(filepath.Join(d, "*"))
		left = append(left, l...)
	}
	if len(left) != 0 {
		t.Errorf("staging or completed still holds %v", left)
	}
	t.Logf("ledger: published %d messages (%d jobs to archive, %d to dead-letter, %d refused) | S3 objects %d, "+
		"dead letters %d, SUCCEEDED rows %d, workflows %d, staging files %d, open multipart uploads %d",
		s.published, archived, dead, len(s.refused), len(objects), len(dls), succeeded, len(runs), len(left), len(mpu.Uploads))
	s.reconciled()
}

// reconciled checks that kafkasync's own reconciliation of the scenario finds nothing amiss: every
// message the bridges consumed is archived, dead-lettered or a redelivery, and every object is right.
func (s *suite) reconciled() {
	t := s.t
	t.Helper()
	kc, err := kafkaops.DialConfig(s.cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	// The bridge commits what it handled every commit interval: wait for it, but a scenario may
	// have left none running.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if lag, err := kc.ConsumerLag(s.cfg.Kafka.JobsTopic, s.cfg.Kafka.Group); err == nil && lag.Total == 0 {
			break
		}
	}
	r, err := reconcile.Check(s.ctx, reconcile.ForConfig(s.cfg, s.store, s.env.Stack.S3.Client(), kc, s.c), s.began)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	var consumed, inFlight int64
	for _, l := range r.Ledger {
		consumed, inFlight = consumed+l.Consumed, inFlight+l.InFlight
	}
	if len(r.Differences) != 0 || inFlight != 0 {
		t.Errorf("kafkasync reconcile: %d in flight, differences %+v", inFlight, r.Differences)
	}
	t.Logf("reconcile: %d messages consumed, %d objects checked, %d differences: %+v", consumed, r.Checked, len(r.Differences), r.Ledger)
}

// objectMD5 returns an object's stored md5 and the md5 of its bytes.
func objectMD5(t *testing.T, ctx context.Context, cl *s3.Client, bucket, key string) (stored, bytesMD5 string) {
	t.Helper()
	out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	h := md5.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		t.Fatal(err)
	}
	return out.Metadata[s3client.MetaMD5], hex.EncodeToString(h.Sum(nil))
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func headers(m *sarama.ConsumerMessage) map[string]string {
	h := map[string]string{}
	for _, rh := range m.Headers {
		h[string(rh.Key)] = string(rh.Value)
	}
	return h
}

// visibilityLag is how far the visibility store of the dev server these tests run on trails the
// workflows.
const visibilityLag = time.Second

// listRuns counts the runs of each FileTransfer workflow the visibility store lists.
func (s *suite) listRuns(ctx context.Context) map[string]int {
	runs := map[string]int{}
	var token []byte
	for {
		resp, err := s.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `WorkflowType = "FileTransfer"`, NextPageToken: token})
		if err != nil {
			s.t.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			runs[e.GetExecution().GetWorkflowId()]++
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return runs
		}
	}
}

// runsListed says whether runs holds every job's runs.
func (s *suite) runsListed(runs map[string]int) bool {
	for id := range s.want {
		if runs["file-"+id] < 1+s.replays[id] {
			return false
		}
	}
	return true
}
