package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
	"github.com/kafkasync/kafkasync/workflows"
)

const workerEnv = "KAFKASYNC_E2E_WORKER"

// TestMain lets the test binary double as a worker process (configured by KAFKASYNC_* variables),
// so a test can SIGKILL a real worker in the middle of a download.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(runWorkerProcess())
	}
	os.Exit(m.Run())
}

func runWorkerProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := config.Load("", os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker config:", err)
		return 2
	}
	log := testLogger()
	c, err := workers.Dial(ctx, cfg.Temporal, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	tr, closeT, err := workers.NewTransfer(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer closeT()
	if err := workers.Run(ctx, c, cfg.Temporal.TaskQueue, tr, time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// workerEnviron is the environment that configures a worker process for env.
func workerEnviron(cfg config.Config) []string {
	kv := map[string]string{
		"KAFKA_BROKERS": strings.Join(cfg.Kafka.Brokers, ","), "KAFKA_JOBS_TOPIC": cfg.Kafka.JobsTopic,
		"KAFKA_DLQ_TOPIC": cfg.Kafka.DLQTopic, "TEMPORAL_ADDRESS": cfg.Temporal.Address,
		"TEMPORAL_TASK_QUEUE": cfg.Temporal.TaskQueue, "SFTP_ADDR": cfg.SFTP.Addr, "SFTP_USER": cfg.SFTP.User,
		"SFTP_KEY_FILE": cfg.SFTP.KeyFile, "SFTP_KNOWN_HOSTS": cfg.SFTP.KnownHosts,
		"S3_ENDPOINT": cfg.S3.Endpoint, "S3_ACCESS_KEY": cfg.S3.AccessKey, "S3_SECRET_KEY": cfg.S3.SecretKey.Reveal(),
		"S3_BUCKET": cfg.S3.Bucket, "S3_PART_SIZE": cfg.S3.PartSize.String(), "POSTGRES_DSN": cfg.Postgres.DSN.Reveal(),
		"TRANSFER_STAGING_DIR": cfg.Transfer.StagingDir, "TRANSFER_COMPLETED_DIR": cfg.Transfer.CompletedDir,
		"TRANSFER_HOST_ID": cfg.Transfer.HostID, "TRANSFER_HEARTBEAT_TIMEOUT": cfg.Transfer.HeartbeatTimeout.String(),
		"LOG_LEVEL": "warn",
	}
	out := append(os.Environ(), workerEnv+"=1")
	for k, v := range kv {
		out = append(out, config.EnvPrefix+k+"="+v)
	}
	return out
}

func startWorkerProcess(t *testing.T, cfg config.Config) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = workerEnviron(cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return cmd
}

// TestWorkerKilledMidDownloadResumes kills a worker with SIGKILL in the middle of a 64 MiB download;
// a new worker process on the same host must finish the job fetching less than half the file.
func TestWorkerKilledMidDownloadResumes(t *testing.T) {
	const size = 64 << 20
	env := testenv.Start(t, testenv.Options{SFTPReadRate: 12 << 20}) // ~5 s for the whole file
	cfg := env.Cfg
	sum := env.WriteFile(t, "big/resume.bin", size, 42)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := workers.Dial(ctx, cfg.Temporal, env.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	first := startWorkerProcess(t, cfg)
	j := job.Job{ID: "resume-1", RemotePath: "/big/resume.bin", MD5: sum, Size: size}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: j.WorkflowID(), TaskQueue: cfg.Temporal.TaskQueue},
		workflows.Name, workflows.Input{Job: j, Options: starter.WorkflowOptions(cfg)})
	if err != nil {
		t.Fatal(err)
	}

	// Wait until the heartbeat says more than half the file is safely on disk, then kill.
	var seen activities.Progress
	for seen.BytesDone < size*55/100 {
		if ctx.Err() != nil {
			t.Fatalf("download never reached 55%%: last heartbeat %+v", seen)
		}
		desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
		if err != nil {
			t.Fatal(err)
		}
		for _, pa := range desc.GetPendingActivities() {
			if pa.GetActivityType().GetName() == "Download" && pa.GetHeartbeatDetails() != nil {
				if err := converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &seen); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	t.Logf("killed the worker at heartbeat %d of %d bytes", seen.BytesDone, size)

	startWorkerProcess(t, cfg)
	var res workflows.Result
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("workflow after restart: %v", err)
	}
	if res.MD5 != sum {
		t.Fatalf("md5 %s, want %s", res.MD5, sum)
	}
	d := res.Download
	t.Logf("after restart: fetched %d bytes, resumed %d, attempt %d", d.Fetched, d.Resumed, d.Attempt)
	if d.Attempt < 2 || d.Resumed < seen.BytesDone || d.Fetched >= size/2 || d.Fetched+d.Resumed != size {
		t.Fatalf("restart fetched %d and resumed %d bytes at attempt %d; want a resumed attempt fetching < %d", d.Fetched, d.Resumed, d.Attempt, size/2)
	}
}
