package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"golang.org/x/sys/unix"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/faultproxy"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/samplefile"
	"github.com/kafkasync/kafkasync/internal/testproc"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
)

// partitions of the bench's topics: the bridge starts up to partitions × kafka.starts_in_flight jobs at once.
const partitions = 3

// stack is the embedded servers plus a config whose SFTP side is the benchmark's sshd.
type stack struct {
	st    *devstack.Stack
	cfg   config.Config
	c     client.Client
	store *audit.Store
	prod  sarama.SyncProducer
	dir   string
	log   *slog.Logger

	mu      sync.Mutex
	started map[string]time.Time // when the bridge's start of each job was accepted
}

func startStack(ctx context.Context, o options, sshd *SSHD, dir string) (*stack, error) {
	logf, err := os.Create(filepath.Join(dir, "servers.log"))
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Kafka.JobsTopic, cfg.Kafka.DLQTopic, cfg.Kafka.DoneTopic, cfg.S3.Bucket = "bench.jobs", "bench.jobs.dlq", "bench.jobs.done", "bench"
	st, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "stack"), Headless: true, Ephemeral: true, Temporal: o.temporal, TemporalShards: o.shards,
		Kafka: devstack.KafkaApache, Topics: []string{cfg.Kafka.JobsTopic, cfg.Kafka.DLQTopic, cfg.Kafka.DoneTopic}, Partitions: partitions, Bucket: cfg.S3.Bucket,
		S3AccessKey: "bench-access", S3SecretKey: "bench-secret-key", Log: logf})
	if err != nil {
		return nil, err
	}
	st.Apply(&cfg)
	// The bench's sshd with the default limits and shared connections, as a deployment has them.
	cfg.SFTP.Addr, cfg.SFTP.User, cfg.SFTP.KeyFile, cfg.SFTP.KnownHosts = sshd.Addr, sshd.User, sshd.KeyFile, sshd.KnownHosts
	cfg.SFTP.Password, cfg.SFTP.HostKey = "", ""
	cfg.Transfer.StagingDir = filepath.Join(dir, "data", "staging")
	cfg.Transfer.CompletedDir = filepath.Join(dir, "data", "completed")
	cfg.Transfer.HostID = "bench"
	cfg.Transfer.Connections = o.k.Connections
	cfg.Transfer.RangeSize = config.ByteSize(o.k.RangeSize)
	cfg.Transfer.HeartbeatTimeout = config.Duration(10 * time.Second)
	cfg.Metrics.WorkerListen, cfg.Metrics.BridgeListen = "", ""
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		st.Stop()
		return nil, err
	}
	s := &stack{st: st, cfg: cfg, dir: dir, started: map[string]time.Time{}, log: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if s.c, err = workers.Dial(ctx, cfg.Temporal, s.log); err != nil {
		s.stop()
		return nil, err
	}
	if s.store, err = audit.Open(ctx, cfg.Postgres.DSN.Reveal()); err != nil {
		s.stop()
		return nil, err
	}
	if _, err := s.store.Migrate(ctx); err != nil {
		s.stop()
		return nil, err
	}
	if s.prod, err = kafkaconn.NewProducer(cfg.Kafka, 0); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *stack) stop() {
	if s.prod != nil {
		s.prod.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.c != nil {
		s.c.Close()
	}
	s.st.Stop()
}

// inProcess runs a worker and the bridge in this process until the returned stop is called.
func (s *stack) inProcess(ctx context.Context) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	tr, closeT, err := workers.NewTransfer(ctx, s.cfg, s.log)
	if err != nil {
		cancel()
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = workers.Run(ctx, s.c, s.cfg.Temporal.TaskQueue, tr, 5*time.Second) }()
	b := starter.New(s.cfg, s.c, s.prod, s.log)
	b.OnStarted = func(id string, dup bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.started[id]; !ok {
			s.started[id] = time.Now()
		}
	}
	go func() { defer wg.Done(); _ = starter.RunConfig(ctx, s.cfg, b) }()
	return func() { cancel(); wg.Wait(); closeT() }, nil
}

func (s *stack) publish(id, remote string) error {
	_, _, err := s.prod.SendMessage(s.jobMessage(id, remote, ""))
	return err
}

// jobMessage is the job message of one file; key "" leaves the object key to the remote path.
func (s *stack) jobMessage(id, remote, key string) *sarama.ProducerMessage {
	value := fmt.Sprintf(`{"id":%q,"remote_path":%q}`, id, remote)
	if key != "" {
		value = fmt.Sprintf(`{"id":%q,"remote_path":%q,"dest_key":%q}`, id, remote, key)
	}
	return &sarama.ProducerMessage{Topic: s.cfg.Kafka.JobsTopic, Key: sarama.StringEncoder(id), Value: sarama.StringEncoder(value)}
}

// publishBatched sends the job messages of many files as an upstream producer with a linger does:
// publishBatch at a time, each batch one produce request, and returns when each batch was sent.
// keys, when not nil, names each file's object.
func (s *stack) publishBatched(ids, remotes, keys []string) (map[string]time.Time, error) {
	sent := make(map[string]time.Time, len(ids))
	for i := 0; i < len(ids); i += publishBatch {
		end := min(i+publishBatch, len(ids))
		batch := make([]*sarama.ProducerMessage, 0, end-i)
		for j := i; j < end; j++ {
			key := ""
			if keys != nil {
				key = keys[j]
			}
			batch = append(batch, s.jobMessage(ids[j], remotes[j], key))
		}
		at := time.Now()
		if err := s.prod.SendMessages(batch); err != nil {
			return nil, err
		}
		for _, id := range ids[i:end] {
			sent[id] = at
		}
	}
	return sent, nil
}

// publishBatch is how many job messages the bench publishes in one produce request.
const publishBatch = 20

// waitSucceeded polls the audit table for the ids not yet finished until every id is SUCCEEDED,
// and returns their finish times. One job is timed by this wait, so it polls often; many are timed
// by their rows' finish times, so it polls seldom, to keep its own queries out of the CPU the jobs
// are charged.
func (s *stack) waitSucceeded(ctx context.Context, ids []string, timeout time.Duration) (map[string]time.Time, error) {
	every := 20 * time.Millisecond
	if len(ids) > 1 {
		every = 500 * time.Millisecond
	}
	out := map[string]time.Time{}
	deadline := time.Now().Add(timeout)
	for len(out) < len(ids) {
		var waiting []string
		for _, id := range ids {
			if _, ok := out[id]; !ok {
				waiting = append(waiting, id)
			}
		}
		// One primary-key lookup per id: with job_id = ANY($1), PostgreSQL's generic plan scanned
		// the whole table comparing each row with every id, and the bench's own polls took as much
		// of its time during a batch as the batch's audit writes.
		rows, err := s.store.Pool().Query(ctx, `SELECT j.job_id, j.status, j.finished_at, coalesce(j.error, '') FROM unnest($1::text[]) AS w (id)
			JOIN jobs j ON j.job_id = w.id WHERE j.status IN ('SUCCEEDED','DEAD_LETTERED','FAILED')`, waiting)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, status, why string
			var at *time.Time
			if err := rows.Scan(&id, &status, &at, &why); err != nil {
				rows.Close()
				return nil, err
			}
			if status != audit.StatusSucceeded {
				rows.Close()
				return nil, fmt.Errorf("job %s ended %s: %s", id, status, why)
			}
			out[id] = *at
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("%d of %d jobs finished after %s", len(out), len(ids), timeout)
		}
		time.Sleep(every)
	}
	return out, nil
}

// waitListed waits until the engine's visibility store lists as closed the workflows of the n jobs
// whose ids start with prefix. Its writes trail the workflows (by up to a second per history
// shard), so the contender after a batch would otherwise pay for the batch's last visibility writes.
func (s *stack) waitListed(ctx context.Context, prefix string, n int) error {
	q := fmt.Sprintf(`WorkflowId STARTS_WITH %q AND ExecutionStatus != "Running"`, job.Job{ID: prefix}.WorkflowID())
	deadline := time.Now().Add(5 * time.Minute)
	for {
		r, err := s.c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
		var bad *serviceerror.InvalidArgument
		switch {
		case err == nil && r.GetCount() >= int64(n):
			return nil
		case ctx.Err() != nil || errors.As(err, &bad):
			return fmt.Errorf("visibility query %s: %w", q, cmp.Or(ctx.Err(), err))
		case time.Now().After(deadline):
			return fmt.Errorf("visibility lists %d of %d workflows %s… closed after 5 minutes (%v)", r.GetCount(), n, prefix, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pipelineScenarios(ctx context.Context, o options, sshd *SSHD, dir string, r *report, w io.Writer) error {
	s, err := startStack(ctx, o, sshd, dir)
	if err != nil {
		return err
	}
	defer s.stop()
	engine := fmt.Sprintf("the Temporal server %s on PostgreSQL (durable: every workflow's state is committed there)", s.st.Temporal.Version)
	if s.st.Temporal.Kind == devstack.TemporalDev {
		engine = "the Temporal dev server, in memory (not durable)"
	}
	r.header = append(r.header, fmt.Sprintf("Pipeline scenarios: the stack of `kafkasync dev` (Apache Kafka, %s, versitygw, PostgreSQL), "+
		"SFTP from the same sshd; kafkasync with %d connections, %d MiB ranges", engine, o.k.Connections, o.k.RangeSize>>20))
	if o.scenarios[3] {
		if err := scenarioEndToEnd(ctx, o, s, sshd, r, w); err != nil {
			return fmt.Errorf("scenario 3: %w", err)
		}
	}
	if o.scenarios[4] {
		if err := scenarioSmallJobs(ctx, o, s, sshd, r, w); err != nil {
			return fmt.Errorf("scenario 4: %w", err)
		}
	}
	if o.scenarios[5] {
		if err := scenarioMemory(ctx, o, s, r, w); err != nil {
			return fmt.Errorf("scenario 5: %w", err)
		}
	}
	if o.scenarios[6] {
		if err := scenarioResume(ctx, o, s, sshd, r, w); err != nil {
			return fmt.Errorf("scenario 6: %w", err)
		}
	}
	return nil
}

// awsCLI returns the aws command and its environment for the stack's S3 server.
func (s *stack) awsCLI(args ...string) *exec.Cmd {
	bin := "/usr/bin/aws" // Debian's awscli
	if _, err := os.Stat(bin); err != nil {
		bin = "aws"
	}
	cmd := exec.Command(bin, append([]string{"--endpoint-url", s.cfg.S3.Endpoint}, args...)...)
	cmd.Env = append(withoutCABundle(), "AWS_ACCESS_KEY_ID="+s.cfg.S3.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.cfg.S3.SecretKey.Reveal(),
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=")
	return cmd
}

// scenarioEndToEnd: one file from Kafka message to S3 object and audit row, against lftp + aws s3 cp.
func scenarioEndToEnd(ctx context.Context, o options, s *stack, sshd *SSHD, r *report, w io.Writer) error {
	src := filepath.Join(s.dir, "e2e", "file.bin")
	if _, err := samplefile.Write(src, o.size, 3); err != nil {
		return err
	}
	defer os.Remove(src)
	stop, err := s.inProcess(ctx)
	if err != nil {
		return err
	}
	defer stop()
	lftp := contenders(sshd, o.k, map[string]bool{"lftp": true})[0]
	var ks, dl, up, peer []time.Duration
	for rep := 0; rep < o.reps; rep++ {
		dropCaches()
		id := fmt.Sprintf("e2e-%d", rep)
		t0 := time.Now()
		if err := s.publish(id, src); err != nil {
			return err
		}
		if _, err := s.waitSucceeded(ctx, []string{id}, 30*time.Minute); err != nil {
			return err
		}
		ks = append(ks, time.Since(t0))
		// the peer: lftp pget -n 8, then aws s3 cp of the file to the same bucket
		dest := filepath.Join(s.dir, "e2e-peer", "file.bin")
		os.RemoveAll(filepath.Dir(dest))
		os.MkdirAll(filepath.Dir(dest), 0o755)
		dropCaches()
		t1 := time.Now()
		if err := lftp.run(ctx, sshd.Addr, src, dest, o.size); err != nil {
			return err
		}
		t2 := time.Now()
		if err := runCmd(s.awsCLI("s3", "cp", "--only-show-errors", dest, fmt.Sprintf("s3://%s/peer/%s", s.cfg.S3.Bucket, id))); err != nil {
			return err
		}
		t3 := time.Now()
		dl, up, peer = append(dl, t2.Sub(t1)), append(up, t3.Sub(t2)), append(peer, t3.Sub(t1))
		fmt.Fprintf(w, "  end to end rep %d: kafkasync %s, lftp %s + aws s3 cp %s\n", rep+1, ks[rep].Round(time.Millisecond), dl[rep].Round(time.Millisecond), up[rep].Round(time.Millisecond))
		os.RemoveAll(filepath.Dir(dest))
	}
	mk, mp := median(ks), median(peer)
	r.add(section{title: fmt.Sprintf("3. One %s job end to end", human(o.size)),
		table: [][]string{{"contender", "median", "MB/s", "kafkasync ÷ peer", "what it includes"},
			{"kafkasync", mk.Round(time.Millisecond).String(), fmt.Sprintf("%.1f", mbps(o.size, mk)), fmt.Sprintf("**%.2f×** (%.2f of the peer's time)", mp.Seconds()/mk.Seconds(), mk.Seconds()/mp.Seconds()),
				"Kafka message → workflow → download, MD5, rename, multipart upload, audit rows (each step durable)"},
			{"lftp + aws s3 cp", mp.Round(time.Millisecond).String(), fmt.Sprintf("%.1f", mbps(o.size, mp)), "",
				fmt.Sprintf("lftp pget -n 8 (median %s), then aws s3 cp to the same S3 server (median %s); no checksum check", median(dl).Round(time.Millisecond), median(up).Round(time.Millisecond))}},
		notes: []string{"Target: kafkasync within 1.3× of the peer's time."}}, w)
	return nil
}

// warmUp runs n small jobs of their own files before the measured ones, so that kafkasync is
// measured warm (the broker's JIT done, every server's caches filled), as the engine ceiling is,
// which runs after it.
func (s *stack) warmUp(ctx context.Context, n int, w io.Writer) error {
	if n <= 0 {
		return nil
	}
	dir := filepath.Join(s.dir, "warm-up")
	ids, files := make([]string, n), make([]string, n)
	for i := range n {
		files[i] = filepath.Join(dir, fmt.Sprintf("w%04d.bin", i))
		if _, err := samplefile.Write(files[i], 64<<10, uint64(1_000_000+i)); err != nil {
			return err
		}
		ids[i] = fmt.Sprintf("warm-up-%04d", i)
	}
	t0 := time.Now()
	if _, err := s.publishBatched(ids, files, nil); err != nil {
		return err
	}
	if _, err := s.waitSucceeded(ctx, ids, 10*time.Minute); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := s.waitListed(ctx, "warm-up-", n); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	fmt.Fprintf(w, "  warm-up: %d jobs in %s, not counted\n", n, time.Since(t0).Round(time.Millisecond))
	return nil
}

// scenarioSmallJobs: 1,000 jobs of 64 KiB with one worker; jobs per second and latency from message
// to audit row; the engine's ceiling and rclone copying the same files from SFTP to S3 run after
// each repetition, so each ratio compares runs minutes apart at most.
func scenarioSmallJobs(ctx context.Context, o options, s *stack, sshd *SSHD, r *report, w io.Writer) error {
	n := o.jobs
	srcDir := filepath.Join(s.dir, "small")
	files := make([]string, n)
	for i := range n {
		files[i] = filepath.Join(srcDir, fmt.Sprintf("f%04d.bin", i))
		if _, err := samplefile.Write(files[i], 64<<10, uint64(i)); err != nil {
			return err
		}
	}
	stop, err := s.inProcess(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if err := s.warmUp(ctx, o.warmup, w); err != nil {
		return err
	}
	pids := s.st.Pids()
	pids["sshd"] = sshd.Pid()
	meter := serverMeter(pids)
	self := os.Getpid()
	meter["bench (worker, bridge, broker if embedded, publisher)"] = func() time.Duration { return ownCPU(self) }
	inFlight := partitions * s.cfg.Kafka.StartsInFlight
	var reps []smallRep
	steps := 0
	for rep := range max(o.smallReps, 1) {
		// Each repetition uploads new objects, as rclone does under its own prefix: a key already
		// there would take the upload's other path (the PUT refused, a HEAD).
		prefix, keys := fmt.Sprintf("small-%d-", rep+1), make([]string, n)
		for i := range n {
			keys[i] = fmt.Sprintf("small-%d/f%04d.bin", rep+1, i)
		}
		k, err := s.smallJobs(ctx, meter, prefix, files, keys)
		if err != nil {
			return err
		}
		if rep == 0 {
			if steps, err = s.localActivities(ctx, job.Job{ID: k.ids[0]}.WorkflowID()); err != nil {
				return err
			}
		}
		if k.ceiling, k.ceilingCPU, err = s.runCeiling(ctx, meter, fmt.Sprintf("ceiling-%d", rep+1), n, steps, inFlight); err != nil {
			return err
		}
		if k.rclone, err = rcloneSmall(ctx, s, sshd, srcDir, fmt.Sprintf("rclone-small-%d", rep+1)); err != nil {
			return err
		}
		fmt.Fprintf(w, "  rep %d: kafkasync %.1f jobs/s, engine ceiling %.1f workflows/s (%.3f×), rclone %.1f files/s\n",
			rep+1, k.perSec(), k.ceiling, k.ratio(), k.rclonePerSec())
		reps = append(reps, k)
	}
	sum := summarise(reps)
	reportSmallJobs(r, w, o, sum, steps, inFlight)
	if phases, err := s.phases(ctx, reps[0].ids, reps[0].sent); err == nil {
		r.sections[len(r.sections)-1].notes = append(r.sections[len(r.sections)-1].notes, phases)
		fmt.Fprintf(w, "  %s\n", phases)
	}
	return nil
}

// smallRep is one repetition of scenario 4: kafkasync's batch, then the ceiling and rclone.
type smallRep struct {
	ids        []string
	sent       map[string]time.Time
	took       time.Duration // from the first publish to the last SUCCEEDED row
	lat        []time.Duration
	cpu        cpuPerJob
	ceiling    float64 // workflows per second
	ceilingCPU cpuPerJob
	rclone     time.Duration
}

func (k smallRep) perSec() float64       { return float64(len(k.ids)) / k.took.Seconds() }
func (k smallRep) rclonePerSec() float64 { return float64(len(k.ids)) / k.rclone.Seconds() }
func (k smallRep) ratio() float64        { return k.perSec() / k.ceiling }

// smallJobs publishes one job per file, their ids starting with prefix, waits for every SUCCEEDED
// row, and measures the batch: its rate to the last SUCCEEDED row, its CPU until the engine lists
// every workflow closed (the visibility writes that trail a batch are part of its cost), as the
// ceiling's.
func (s *stack) smallJobs(ctx context.Context, meter cpuMeter, prefix string, files, keys []string) (smallRep, error) {
	ids := make([]string, len(files))
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	before := meter.sample()
	t0 := time.Now()
	sent, err := s.publishBatched(ids, files, keys)
	if err != nil {
		return smallRep{}, err
	}
	done, err := s.waitSucceeded(ctx, ids, 30*time.Minute)
	if err != nil {
		return smallRep{}, err
	}
	if err := s.waitListed(ctx, prefix, len(ids)); err != nil {
		return smallRep{}, err
	}
	k := smallRep{ids: ids, sent: sent, cpu: meter.perJob(before, meter.sample(), len(ids))}
	last := t0
	for id, at := range done {
		k.lat = append(k.lat, at.Sub(sent[id]))
		if at.After(last) {
			last = at
		}
	}
	k.took = last.Sub(t0)
	return k, nil
}

// rcloneSmall copies the folder of small files from SFTP to S3 under prefix with rclone.
func rcloneSmall(ctx context.Context, s *stack, sshd *SSHD, srcDir, prefix string) (time.Duration, error) {
	host, port := strings.Split(sshd.Addr, ":")[0], strings.Split(sshd.Addr, ":")[1]
	conf := filepath.Join(s.dir, "rclone.conf")
	_ = os.WriteFile(conf, nil, 0o600)
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "rclone", "--config", conf, "copy", ":sftp:"+srcDir, ":s3:"+s.cfg.S3.Bucket+"/"+prefix,
		"--sftp-host", host, "--sftp-port", port, "--sftp-user", sshd.User, "--sftp-key-file", sshd.KeyFile,
		"--sftp-known-hosts-file", sshd.KnownHosts, "--sftp-disable-hashcheck",
		"--s3-provider", "Other", "--s3-endpoint", s.cfg.S3.Endpoint, "--s3-access-key-id", s.cfg.S3.AccessKey,
		"--s3-secret-access-key", s.cfg.S3.SecretKey.Reveal(), "--s3-region", "us-east-1", "--transfers", "16", "--checkers", "16")
	cmd.Env = withoutCABundle() // the S3 server is plain http; a CA bundle setting makes rclone's S3 client fail
	if err := runCmd(cmd); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// smallSummary is scenario 4 over its repetitions: medians of the rates, the ratios of each
// repetition's kafkasync to its own ceiling and rclone, latencies over every job, CPU averaged.
type smallSummary struct {
	reps                        []smallRep
	jobsPerSec, ceiling, rclone float64
	ratioCeiling, ratioRclone   float64
	p50, p99                    time.Duration
	cpu, ceilingCPU             cpuPerJob
}

func summarise(reps []smallRep) smallSummary {
	var ks, cs, rs, rc, rr []float64
	var lat []time.Duration
	cpu, ccpu := cpuPerJob{}, cpuPerJob{}
	for _, k := range reps {
		ks, cs, rs = append(ks, k.perSec()), append(cs, k.ceiling), append(rs, k.rclonePerSec())
		rc, rr = append(rc, k.ratio()), append(rr, k.perSec()/k.rclonePerSec())
		lat = append(lat, k.lat...)
		for name, v := range k.cpu {
			cpu[name] += v / float64(len(reps))
		}
		for name, v := range k.ceilingCPU {
			ccpu[name] += v / float64(len(reps))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return smallSummary{reps: reps, jobsPerSec: median(ks), ceiling: median(cs), rclone: median(rs),
		ratioCeiling: median(rc), ratioRclone: median(rr),
		p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)], cpu: cpu, ceilingCPU: ccpu}
}

// reportSmallJobs writes scenario 4's section, its summary line and the targets it missed.
func reportSmallJobs(r *report, w io.Writer, o options, sum smallSummary, steps, inFlight int) {
	n := o.jobs
	var kruns, cruns, rruns, ratios []string
	for _, k := range sum.reps {
		kruns, cruns = append(kruns, fmt.Sprintf("%.1f", k.perSec())), append(cruns, fmt.Sprintf("%.1f", k.ceiling))
		rruns = append(rruns, fmt.Sprintf("%.1f", k.rclonePerSec()))
		ratios = append(ratios, fmt.Sprintf("%.3f", k.ratio()))
	}
	r.add(section{title: fmt.Sprintf("4. %d jobs of 64 KiB end to end, one worker", n),
		table: [][]string{{"contender", "median jobs/s", "runs (jobs/s)", "p50 latency", "p99 latency", "kafkasync ÷ it (median of the runs' ratios)"},
			{"kafkasync", fmt.Sprintf("%.1f", sum.jobsPerSec), strings.Join(kruns, ", "), sum.p50.Round(time.Millisecond).String(), sum.p99.Round(time.Millisecond).String(), ""},
			{fmt.Sprintf("engine ceiling (no-op workflow, %d local activities)", steps), fmt.Sprintf("%.1f", sum.ceiling), strings.Join(cruns, ", "), "", "", fmt.Sprintf("**%.2f×** (runs %s)", sum.ratioCeiling, strings.Join(ratios, ", "))},
			{"rclone copy (sftp → s3, 16 transfers)", fmt.Sprintf("%.1f", sum.rclone), strings.Join(rruns, ", "), "", "", fmt.Sprintf("**%.2f×**", sum.ratioRclone)}},
		notes: []string{fmt.Sprintf("Measured after %d warm-up jobs of other files, not counted; then %d repetitions, each of kafkasync's %d jobs (to new object keys), the engine ceiling and rclone, one after the other, each once the engine's visibility store listed the batch before it closed. ", o.warmup, len(sum.reps), n) +
			fmt.Sprintf("The job messages are published %d to a produce request. ", publishBatch) +
			"Latency: from publishing the job message to the job's audit row turning SUCCEEDED, over the jobs of every repetition. Each kafkasync job is a " +
			"durable workflow of one workflow task: the stat, the host claim, Small (download, verify and upload of a file up to " +
			"transfer.small_file, in memory) and the audit writes as local activities; rclone keeps no state. " +
			fmt.Sprintf("The engine ceiling runs on the same Temporal server in the same run: %d workflows that only run as many local activities as "+
				"a kafkasync job did (counted in its history), started with the bridge's options (search attributes, eager start), %d at once "+
				"(partitions × kafka.starts_in_flight); each ends at its last local activity, as a kafkasync job at its SUCCEEDED row. ", n, inFlight) +
			fmt.Sprintf("Targets: at least %.0f jobs/s on durable persistence, %.1f× the ceiling and half of rclone's rate.", targetJobsPerSec, targetCeilingRatio),
			"CPU seconds per kafkasync job, by process, averaged over the repetitions (from /proc: each server with its children, the bench process alone): " +
				sum.cpu.String() + ". The same per workflow of the engine ceiling: " + sum.ceilingCPU.String() + "."}}, w)
	if miss := missedTargets(sum); miss != "" {
		miss += fmt.Sprintf(" What a kafkasync job spends over a ceiling workflow, by process, largest first: %s.", sum.cpu.over(sum.ceilingCPU))
		r.sections[len(r.sections)-1].notes = append(r.sections[len(r.sections)-1].notes, miss)
		fmt.Fprintf(w, "  %s\n", miss)
	}
	fmt.Fprintf(w, "  CPU s/job: %s\n  CPU s/workflow of the ceiling: %s\n", sum.cpu, sum.ceilingCPU)
	line := fmt.Sprintf("scenario4 jobs_per_s=%.1f ceiling_per_s=%.1f ratio_ceiling=%.3f rclone_per_s=%.1f ratio_rclone=%.3f p50_s=%.3f p99_s=%.3f",
		sum.jobsPerSec, sum.ceiling, sum.ratioCeiling, sum.rclone, sum.ratioRclone, sum.p50.Seconds(), sum.p99.Seconds())
	r.machine = append(r.machine, line)
	fmt.Fprintln(w, line)
}

// Scenario 4's targets, on durable persistence.
const (
	targetJobsPerSec   = 100.0
	targetCeilingRatio = 0.6
	targetRcloneRatio  = 0.5
	targetP99          = 15 * time.Second
)

// missedTargets names the scenario's targets a run missed, and by how much ("" when it met them).
func missedTargets(sum smallSummary) string {
	var missed []string
	if sum.jobsPerSec < targetJobsPerSec {
		missed = append(missed, fmt.Sprintf("%.0f jobs/s by %.1f", targetJobsPerSec, targetJobsPerSec-sum.jobsPerSec))
	}
	if sum.ratioCeiling < targetCeilingRatio {
		missed = append(missed, fmt.Sprintf("%.1f× the ceiling by %.2f× (%.2f×)", targetCeilingRatio, targetCeilingRatio-sum.ratioCeiling, sum.ratioCeiling))
	}
	if sum.ratioRclone < targetRcloneRatio {
		missed = append(missed, fmt.Sprintf("half of rclone's rate by %.2f× (%.2f×; the engine's own ceiling is %.2f× rclone's)",
			targetRcloneRatio-sum.ratioRclone, sum.ratioRclone, sum.ceiling/sum.rclone))
	}
	if sum.p99 >= targetP99 {
		missed = append(missed, fmt.Sprintf("a p99 under %.0f s by %s", targetP99.Seconds(), (sum.p99-targetP99).Round(time.Millisecond)))
	}
	if len(missed) == 0 {
		return ""
	}
	return "Targets missed: " + strings.Join(missed, "; ") + "."
}

// phases says where a job's time went, from its audit events: medians from publishing to the
// workflow's first task (the queued event), from there to the host step's start (stat and host
// claim), the host step, and from its end to SUCCEEDED.
func (s *stack) phases(ctx context.Context, ids []string, sent map[string]time.Time) (string, error) {
	rows, err := s.store.Pool().Query(ctx, `SELECT job_id,
		min(at) FILTER (WHERE step = 'queued'),
		min(at) FILTER (WHERE step = 'download' AND outcome = 'started'),
		max(at) FILTER (WHERE step = 'download' AND outcome = 'succeeded'),
		max(at) FILTER (WHERE step = 'upload' AND outcome = 'succeeded')
		FROM job_events WHERE job_id = ANY($1) GROUP BY job_id`, ids)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var accepted, queued, stat, host, rest []time.Duration
	for rows.Next() {
		var id string
		var q, d0, d1, u *time.Time
		if err := rows.Scan(&id, &q, &d0, &d1, &u); err != nil {
			return "", err
		}
		if q == nil || d0 == nil || d1 == nil || u == nil {
			continue
		}
		s.mu.Lock()
		if at, ok := s.started[id]; ok {
			accepted = append(accepted, at.Sub(sent[id]))
		}
		s.mu.Unlock()
		queued, stat = append(queued, q.Sub(sent[id])), append(stat, d0.Sub(*q))
		host, rest = append(host, d1.Sub(*d0)), append(rest, u.Sub(*d1))
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	if len(queued) == 0 {
		return "", errors.New("no audit events")
	}
	ms := func(d []time.Duration) string { return median(d).Round(time.Millisecond).String() }
	return fmt.Sprintf("Where the time went (medians over %d jobs, from the audit events): publish → the bridge's start accepted by Temporal %s; "+
		"publish → the workflow's first task %s; stat and host claim %s; the host step %s; its end → SUCCEEDED %s.",
		len(queued), ms(accepted), ms(queued), ms(stat), ms(host), ms(rest)), nil
}

// worker runs a worker process (this binary in the worker role) with the stack's config.
func (s *stack) worker(cfg config.Config, name string) (*testproc.Proc, error) {
	logf, err := os.Create(filepath.Join(s.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	return testproc.Spawn(testproc.Worker, cfg, logf)
}

// peakRSS is a process's high-water resident set (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}

// scenarioMemory: the worker's peak RSS moving a small and a large file, each in a fresh worker.
func scenarioMemory(ctx context.Context, o options, s *stack, r *report, w io.Writer) error {
	small, large := int64(64<<20), int64(4<<30)
	if o.size < 1<<30 {
		small, large = o.size, 4*o.size // smoke runs
	}
	defer s.bridgeOnly(ctx)()
	table := [][]string{{"file", "worker peak RSS", "time"}}
	var rss []int64
	for i, size := range []int64{small, large} {
		if err := enoughDisk(s.dir, size); err != nil {
			return err
		}
		src := filepath.Join(s.dir, "mem", fmt.Sprintf("f%d.bin", i))
		if _, err := samplefile.Write(src, size, uint64(i)); err != nil {
			return err
		}
		p, err := s.worker(s.cfg, fmt.Sprintf("worker-mem-%d", i))
		if err != nil {
			return err
		}
		id := fmt.Sprintf("mem-%d", i)
		t0 := time.Now()
		if err := s.publish(id, src); err != nil {
			return err
		}
		_, werr := s.waitSucceeded(ctx, []string{id}, 30*time.Minute)
		el := time.Since(t0)
		hwm, err := peakRSS(p.Cmd.Process.Pid)
		p.Stop(10 * time.Second)
		os.Remove(src)
		if werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
		rss = append(rss, hwm)
		table = append(table, []string{human(size), fmt.Sprintf("%.1f MiB", float64(hwm)/(1<<20)), el.Round(time.Millisecond).String()})
		fmt.Fprintf(w, "  memory: %s file, worker peak RSS %.1f MiB\n", human(size), float64(hwm)/(1<<20))
	}
	r.add(section{title: "5. Worker memory", table: table, notes: []string{fmt.Sprintf(
		"Peak RSS (VmHWM) of a fresh `worker` process per file, end to end (download, MD5, rename, upload). "+
			"Large ÷ small: **%.2f×** (target: within 1.2×). Download memory is connections × read size; the upload holds part size × concurrency.",
		float64(rss[1])/float64(rss[0]))}}, w)
	return nil
}

// enoughDisk checks that dir's filesystem holds a job of size end to end: the source file, the
// staging file, the object's parts and the object the server assembles from them, all on the
// one disk here, with a GiB to spare. Short of it, the server refuses the multipart upload's end
// (507) and the job is dead-lettered, which says nothing about kafkasync.
func enoughDisk(dir string, size int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	need, free := 4*size+1<<30, int64(st.Bavail)*st.Bsize
	if free < need {
		return fmt.Errorf("a %s job needs %s free on the disk of %s, which has %s", human(size), human(need), dir, human(free))
	}
	return nil
}

// bridgeOnly runs the bridge in this process (workers run as their own processes).
func (s *stack) bridgeOnly(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = starter.RunConfig(ctx, s.cfg, starter.New(s.cfg, s.c, s.prod, s.log))
	}()
	return func() { cancel(); <-done }
}

// scenarioResume: the worker is killed at half of a download; a new worker on the same host
// finishes it. Bytes fetched again = everything the server sent in both attempts, less the file.
func scenarioResume(ctx context.Context, o options, s *stack, sshd *SSHD, r *report, w io.Writer) error {
	src := filepath.Join(s.dir, "resume", "file.bin")
	if _, err := samplefile.Write(src, o.size, 3); err != nil {
		return err
	}
	defer os.Remove(src)
	px, err := faultproxy.New(sshd.Addr) // counts what the server sends
	if err != nil {
		return err
	}
	defer px.Close()
	if err := sshd.Trust(px.Addr); err != nil {
		return err
	}
	cfg := s.cfg
	cfg.SFTP.Addr = px.Addr
	defer s.bridgeOnly(ctx)()
	first, err := s.worker(cfg, "worker-resume-1")
	if err != nil {
		return err
	}
	const id = "resume"
	if err := s.publish(id, src); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for px.FromTarget.Load() < o.size/2 {
		if time.Now().After(deadline) {
			first.Kill()
			return fmt.Errorf("download never reached half")
		}
		time.Sleep(2 * time.Millisecond)
	}
	first.Kill()
	atKill := px.FromTarget.Load()
	second, err := s.worker(cfg, "worker-resume-2")
	if err != nil {
		return err
	}
	defer second.Stop(10 * time.Second)
	if _, err := s.waitSucceeded(ctx, []string{id}, 30*time.Minute); err != nil {
		return err
	}
	var res struct{ Download activities.DownloadResult }
	if err := s.c.GetWorkflow(ctx, "file-"+id, "").Get(ctx, &res); err != nil {
		return err
	}
	total := px.FromTarget.Load()
	again := total - o.size
	r.add(section{title: fmt.Sprintf("6. Resume after the worker is killed at half of a %s download", human(o.size)),
		table: [][]string{{"sent before the kill", "kept (resumed)", "fetched after the restart", "fetched again", "share of the file"},
			{human2(atKill), human2(res.Download.Resumed), human2(res.Download.Fetched), human2(again), fmt.Sprintf("**%.2f %%**", 100*float64(again)/float64(o.size))}},
		notes: []string{"Bytes counted by a proxy between the workers and sshd (SFTP and SSH overhead included, so 'fetched again' slightly overstates). " +
			"The worker journals the bytes it has written next to the staging file every 50 ms, inside ranges, with the kernel's boot id; " +
			"the restarted worker on the same host and boot trusts that journal (the page cache survived the process), after a reboot only what was synced. rclone and lftp start such a file over. Target: under 5 %."}}, w)
	return nil
}

func human2(n int64) string {
	if n < 0 {
		return "-" + human2(-n)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func withoutCABundle() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			out = append(out, kv)
		}
	}
	return out
}
