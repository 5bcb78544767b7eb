package faults

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"golang.org/x/crypto/ssh"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/faultproxy"
	"github.com/kafkasync/kafkasync/internal/progress"
	"github.com/kafkasync/kafkasync/internal/sftpserver"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/internal/testproc"
	"github.com/kafkasync/kafkasync/workflows"
)

// progress returns the Download heartbeat of a job's workflow, its attempt and its last failure.
func (s *suite) progress(id string) (p progress.Progress, attempt int32, lastFailure string) {
	s.t.Helper()
	d, err := s.c.DescribeWorkflowExecution(s.ctx, "file-"+id, "")
	if err != nil {
		return p, 0, ""
	}
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() != "Download" {
			continue
		}
		if hb := pa.GetHeartbeatDetails(); hb != nil {
			_ = converter.GetDefaultDataConverter().FromPayloads(hb, &p)
		}
		return p, pa.GetAttempt(), pa.GetLastFailure().GetMessage()
	}
	return p, 0, ""
}

// waitFor polls cond every 50 ms until it holds, or fails the test after timeout.
func (s *suite) waitFor(what string, timeout time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// result is the finished workflow's result.
func (s *suite) result(id string) workflows.Result {
	s.t.Helper()
	var r workflows.Result
	if err := s.c.GetWorkflow(s.ctx, "file-"+id, "").Get(s.ctx, &r); err != nil {
		s.t.Fatalf("workflow of %s: %v", id, err)
	}
	return r
}

// TestWorkerKilledMidDownloadOf1GiB (scenario 1): SIGKILL at half of a 1 GiB download; the restarted
// worker resumes from the ranges the heartbeat recorded.
func TestWorkerKilledMidDownloadOf1GiB(t *testing.T) {
	const size = 1 << 30
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache, SFTPReadRate: 96 << 20}, func(c *config.Config) { c.Transfer.RangeSize = 8 << 20 })
	w := s.worker(s.cfg)
	s.bridge(s.cfg)
	s.job("big", "in/big.bin", size, 77)
	var seen progress.Progress
	s.waitFor("half of the download", 3*time.Minute, func() bool {
		seen, _, _ = s.progress("big")
		return seen.BytesDone >= size/2
	})
	w.Kill()
	t.Logf("killed the worker at heartbeat %d MiB of %d MiB", seen.BytesDone>>20, size>>20)
	s.worker(s.cfg)
	s.wait(4 * time.Minute)
	s.ledger()
	d := s.result("big").Download
	t.Logf("after restart: fetched %d MiB, resumed %d MiB, attempt %d", d.Fetched>>20, d.Resumed>>20, d.Attempt)
	if d.Attempt < 2 || d.Resumed < seen.BytesDone || d.Fetched+d.Resumed != size {
		t.Fatalf("restart fetched %d and resumed %d bytes at attempt %d; want at least the %d bytes of the heartbeat resumed", d.Fetched, d.Resumed, d.Attempt, seen.BytesDone)
	}
}

// TestWorkerKilledMidUpload (scenario 2): SIGKILL while the multipart upload runs; the object appears
// once and the dead attempt's multipart upload is aborted.
func TestWorkerKilledMidUpload(t *testing.T) {
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, nil)
	px, err := faultproxy.New(strings.TrimPrefix(s.cfg.S3.Endpoint, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.Limit(6 << 20) // ~8 s for the file, so the kill lands mid-upload
	s.cfg.S3.Endpoint = "http://" + px.Addr
	s.cfg.S3.Concurrency = 2
	w := s.worker(s.cfg)
	s.bridge(s.cfg)
	s.job("upload", "in/upload.bin", 48<<20, 12)
	cl := s.env.Stack.S3.Client()
	s.waitFor("a multipart upload in progress", 2*time.Minute, func() bool {
		j, err := s.store.Job(s.ctx, "upload")
		if err != nil || j.Status != audit.StatusUploading {
			return false
		}
		mpu, err := cl.ListMultipartUploads(s.ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.S3.Bucket)})
		return err == nil && len(mpu.Uploads) > 0
	})
	time.Sleep(time.Second)
	w.Kill()
	mpu, _ := cl.ListMultipartUploads(s.ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.S3.Bucket)})
	t.Logf("killed the worker with %d multipart upload(s) open", len(mpu.Uploads))
	px.Limit(0)
	_, logs := s.run(testproc.Worker, s.cfg)
	s.wait(2 * time.Minute)
	s.ledger()
	if n := countLines(t, logs, "aborted incomplete multipart uploads"); n < 1 {
		t.Fatal("the restarted worker did not abort the killed attempt's multipart upload")
	}
}

// TestBridgeKilledBeforeCommit (scenario 3): the bridge starts workflows and is killed before it
// commits the offsets; the next bridge reads the same messages again and starts nothing new.
func TestBridgeKilledBeforeCommit(t *testing.T) {
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache}, nil)
	s.worker(s.cfg)
	slow := s.cfg
	slow.Kafka.CommitInterval = config.Duration(time.Hour)
	b := s.bridge(slow)
	const n = 12
	for i := range n {
		s.job(fmt.Sprintf("job-%02d", i), fmt.Sprintf("in/f%02d.bin", i), 512<<10, uint64(i))
	}
	s.waitFor("every workflow started", time.Minute, func() bool {
		r, err := s.c.CountWorkflow(s.ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: `WorkflowType = "FileTransfer"`})
		return err == nil && r.GetCount() == n
	})
	b.Kill()
	_, logs := s.run(testproc.Bridge, s.cfg)
	s.waitFor("the messages read again", time.Minute, func() bool {
		return countLines(t, logs, `"msg":"job started"`) >= n
	})
	s.wait(2 * time.Minute)
	s.ledger()
	t.Logf("the second bridge handled %d redelivered messages", countLines(t, logs, `"msg":"job started"`))
}

// TestSFTPResetAndStall (scenario 4): every SFTP connection is reset mid-range, later they all stall
// with their sockets open; the ranges are fetched again and the stall ends the attempt by deadline.
func TestSFTPResetAndStall(t *testing.T) {
	const size = 32 << 20
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache, SFTPReadRate: 6 << 20}, func(c *config.Config) {
		c.Transfer.RangeSize = 1 << 20
		c.Transfer.MaxAttempts = 6
	})
	px := s.proxySFTP()
	s.worker(s.cfg)
	s.bridge(s.cfg)
	s.job("flaky", "in/flaky.bin", size, 31)
	s.waitFor("a quarter downloaded", time.Minute, func() bool { p, _, _ := s.progress("flaky"); return p.BytesDone >= size/4 })
	px.Reset()
	t.Logf("reset %d connections", px.Resets.Load())
	// Counted at the proxy, not from heartbeats: the retry can outrun the heartbeat interval.
	atReset := px.FromTarget.Load()
	s.waitFor("the retry to fetch another 30%", time.Minute, func() bool { return px.FromTarget.Load()-atReset >= size*3/10 })
	px.Stall()
	stalled := time.Now()
	var failure string
	s.waitFor("the stall detected", 30*time.Second, func() bool {
		_, _, failure = s.progress("flaky")
		return strings.Contains(failure, "stalled")
	})
	detected := time.Since(stalled)
	px.Resume()
	t.Logf("stall detected after %s: %s", detected.Round(100*time.Millisecond), failure)
	if detected > s.cfg.Transfer.StallTimeout.D()+5*time.Second {
		t.Fatalf("stall took %s to detect (stall timeout %s)", detected, s.cfg.Transfer.StallTimeout)
	}
	s.wait(2 * time.Minute)
	s.ledger()
	d := s.result("flaky").Download
	t.Logf("download finished at attempt %d: fetched %d MiB in the last attempt, resumed %d MiB", d.Attempt, d.Fetched>>20, d.Resumed>>20)
	if d.Attempt < 3 || d.Resumed == 0 {
		t.Fatalf("download attempt %d resumed %d bytes; want a third attempt that resumed", d.Attempt, d.Resumed)
	}
}

// proxySFTP puts a fault proxy between the workers and the SFTP server, trusting the server's key
// under the proxy's address.
func (s *suite) proxySFTP() *faultproxy.Proxy {
	s.t.Helper()
	px, err := faultproxy.New(s.cfg.SFTP.Addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(px.Close)
	b, err := os.ReadFile(s.cfg.SFTP.KnownHosts)
	if err != nil {
		s.t.Fatal(err)
	}
	_, _, key, _, _, err := ssh.ParseKnownHosts(b)
	if err != nil {
		s.t.Fatal(err)
	}
	kh := filepath.Join(s.env.Dir, "proxy_known_hosts")
	if err := os.WriteFile(kh, []byte(sftpserver.KnownHostsLine(px.Addr, key)+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.cfg.SFTP.Addr, s.cfg.SFTP.KnownHosts = px.Addr, kh
	return px
}

func countLines(t *testing.T, file, substr string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			n++
		}
	}
	return n
}

// TestWorkerSIGTERMIsGraceful: a worker told to stop (SIGTERM, as Kubernetes and compose do) in the
// middle of a download stops polling, records what it has, and exits within its stop timeout; the
// next worker on the same host resumes rather than starting over.
func TestWorkerSIGTERMIsGraceful(t *testing.T) {
	// 30 MiB left at 4 MB/s: more than the worker's 5 s stop timeout, so the download is cut short.
	const size = 40 << 20
	s := start(t, testenv.Options{Kafka: devstack.KafkaApache, SFTPReadRate: 4 << 20}, func(c *config.Config) { c.Transfer.RangeSize = 1 << 20 })
	w := s.worker(s.cfg)
	s.bridge(s.cfg)
	s.job("term", "in/term.bin", size, 41)
	var seen progress.Progress
	s.waitFor("a quarter downloaded", time.Minute, func() bool {
		seen, _, _ = s.progress("term")
		return seen.BytesDone >= size/4
	})
	t0 := time.Now()
	if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s.waitFor("the worker to exit", 20*time.Second, w.Exited)
	took := time.Since(t0)
	code := w.Cmd.ProcessState.ExitCode()
	t.Logf("SIGTERM at %d MiB: the worker exited with code %d after %s", seen.BytesDone>>20, code, took.Round(10*time.Millisecond))
	if code != 0 || took > 8*time.Second {
		t.Fatalf("worker exit code %d after %s, want 0 within its 5 s stop timeout", code, took)
	}
	s.worker(s.cfg)
	s.wait(2 * time.Minute)
	s.ledger()
	d := s.result("term").Download
	t.Logf("after the restart: resumed %d MiB, fetched %d MiB, attempt %d", d.Resumed>>20, d.Fetched>>20, d.Attempt)
	if d.Attempt < 2 || d.Resumed < seen.BytesDone {
		t.Fatalf("resumed %d bytes at attempt %d; want at least the %d bytes seen before SIGTERM", d.Resumed, d.Attempt, seen.BytesDone)
	}
}
