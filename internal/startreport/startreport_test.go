package startreport_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/startreport"
	"github.com/kafkasync/kafkasync/workers"
)

// Against the Temporal dev server: the first start of an ID makes a run, a second one while it
// runs (no worker polls its queue, so it keeps running) finds it, and a client without the
// interceptor cannot tell.
func TestStartedTellsNewRunFromRunningOne(t *testing.T) {
	bin, err := devstack.FindBin("", "temporal")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{Bin: bin, Headless: true, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Stop()
	cfg := config.Default().Temporal
	cfg.Address = tp.Address
	c, err := workers.Dial(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := client.StartWorkflowOptions{ID: "report-1", TaskQueue: "nobody-polls",
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING}
	start := func(c client.Client) (started, known bool) {
		t.Helper()
		sctx, report := startreport.Watch(ctx)
		if _, err := c.ExecuteWorkflow(sctx, opts, "AnyWorkflow"); err != nil {
			t.Fatal(err)
		}
		return report()
	}
	if started, known := start(c); !started || !known {
		t.Fatalf("first start: started %v known %v, want a new run", started, known)
	}
	if started, known := start(c); started || !known {
		t.Fatalf("second start: started %v known %v, want the running one found", started, known)
	}
	plain, err := client.DialContext(ctx, client.Options{HostPort: tp.Address, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, known := start(plain); known {
		t.Fatal("a client without the interceptor reported an answer")
	}
}

type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
