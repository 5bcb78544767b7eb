package devstack

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/kafkasync/kafkasync/internal/searchattr"
)

// The Temporal server runs on the stack's PostgreSQL with its Web UI, has namespace default and
// kafkasync's search attributes on SQL visibility, and keeps a workflow across a restart.
func TestTemporalServerOnPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kafkasync-temporal-server-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := Start(ctx, Options{Dir: dir, Temporal: TemporalServer, Kafka: KafkaEmbedded, Topics: []string{"jobs"},
		Bucket: "kafkasync-test", S3AccessKey: "ak", S3SecretKey: "sk-secret", Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Stop)
	if st.Temporal.Kind != TemporalServer {
		t.Fatalf("kind %q", st.Temporal.Kind)
	}
	resp, err := http.Get(st.Temporal.UIURL + "/")
	if err != nil {
		t.Fatalf("web ui: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(page) == 0 {
		t.Fatalf("web ui: %s, %d bytes", resp.Status, len(page))
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: st.Temporal.Address})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for name, typ := range searchattr.All {
		if got := sa.GetCustomAttributes()[name]; got != typ {
			t.Errorf("search attribute %s: %v, want %v", name, got, typ)
		}
	}
	// A workflow nobody runs: it must still be there after the server restarts.
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "durable", TaskQueue: "nobody",
		TypedSearchAttributes: searchattrs()}, "Nothing")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Restart(ctx, ServerTemporal, 0); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeWorkflowExecution(ctx, "durable", run.GetRunID())
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if s := d.GetWorkflowExecutionInfo().GetStatus(); s != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("after the restart: %v", s)
	}
	// SQL visibility answers a query on a custom search attribute.
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `JobStatus = "QUEUED"`})
		if err == nil && len(l.GetExecutions()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("visibility query: %v, %d executions", err, len(l.GetExecutions()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func searchattrs() temporal.SearchAttributes {
	return temporal.NewSearchAttributes(searchattr.JobID.ValueSet("durable"), searchattr.JobStatus.ValueSet("QUEUED"))
}
