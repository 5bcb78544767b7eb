package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// saveHistory writes a workflow's history as JSON into the folder $KAFKASYNC_WRITE_HISTORY, when set:
// that is how workflows/testdata gets new histories for the replay test after the workflow changes
// on purpose (make histories).
func saveHistory(t *testing.T, ctx context.Context, c client.Client, workflowID string) {
	dir := os.Getenv("KAFKASYNC_WRITE_HISTORY")
	if dir == "" {
		return
	}
	file := filepath.Join(dir, workflowID+".json")
	h := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the history of %s to %s", workflowID, file)
}
