package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/progress"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/internal/testproc"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
	"github.com/kafkasync/kafkasync/workflows"
)

// TestMain lets the test binary double as a worker process, so a test can SIGKILL a real worker
// in the middle of a download.
func TestMain(m *testing.M) { testproc.Main(m) }

// TestWorkerKilledMidDownloadResumes kills a worker with SIGKILL in the middle of a 64 MiB download;
// a new worker process on the same host must finish the job fetching less than half the file.
func TestWorkerKilledMidDownloadResumes(t *testing.T) {
	const size = 64 << 20
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded, SFTPReadRate: 12 << 20}) // ~5 s for the whole file
	cfg := env.Cfg
	sum := env.WriteFile(t, "big/resume.bin", size, 42)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := workers.Dial(ctx, cfg.Temporal, env.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	first := testproc.Start(t, testproc.Worker, cfg, os.Stderr)
	j := job.Job{ID: "resume-1", RemotePath: "/big/resume.bin", MD5: sum, Size: size}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: j.WorkflowID(), TaskQueue: cfg.Temporal.TaskQueue},
		workflows.Name, workflows.Input{Job: j, Options: starter.WorkflowOptions(cfg)})
	if err != nil {
		t.Fatal(err)
	}

	// Wait until the heartbeat says more than half the file is safely on disk, then kill.
	var seen progress.Progress
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
	first.Kill()
	t.Logf("killed the worker at heartbeat %d of %d bytes", seen.BytesDone, size)

	testproc.Start(t, testproc.Worker, cfg, os.Stderr)
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
