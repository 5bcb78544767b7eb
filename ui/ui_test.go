package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/ui"
)

func setup(t *testing.T) (*audit.Store, *httptest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kafkasync-ui-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	pg, err := devstack.StartPostgres(ctx, dir+"/pg", 0, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	store, err := audit.Open(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui.New(ui.Options{Store: store, TemporalUI: "http://temporal.example:8233", Namespace: "default"}))
	t.Cleanup(srv.Close)
	return store, srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDashboard(t *testing.T) {
	store, srv := setup(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i, ev := range []audit.Event{
		{JobID: "ok-1", Step: "queued", Outcome: "started", Status: audit.StatusQueued, RemotePath: "/in/report.csv"},
		{JobID: "ok-1", Step: "upload", Outcome: "succeeded", Status: audit.StatusSucceeded, RemotePath: "/in/report.csv",
			S3Bucket: "b", S3Key: "in/report.csv", Size: 2048, SizeKnown: true, BytesPerSec: 5e6, Finished: true},
		{JobID: "bad-1", Step: "dead_letter", Outcome: "succeeded", Status: audit.StatusDeadLettered, RemotePath: "/in/<script>.bin",
			Error: "verify: md5 x, job says y", Finished: true},
	} {
		ev.WorkflowID, ev.RunID, ev.Seq, ev.At = "file-"+ev.JobID, "run-1", i+1, at.Add(time.Duration(i)*time.Second)
		if err := store.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if err := store.Record(ctx, ev); err != nil { // idempotent
			t.Fatal(err)
		}
	}

	code, body := get(t, srv.URL+"/jobs")
	if code != 200 || !strings.Contains(body, "ok-1") || !strings.Contains(body, "bad-1") || !strings.Contains(body, "2.0 KiB") {
		t.Fatalf("jobs page %d:\n%s", code, body)
	}
	if strings.Contains(body, "<script>.bin") {
		t.Fatal("remote path not escaped")
	}
	code, body = get(t, srv.URL+"/jobs?status=dead_lettered")
	if code != 200 || strings.Contains(body, `href="/jobs/ok-1"`) || !strings.Contains(body, `href="/jobs/bad-1"`) {
		t.Fatalf("status filter %d:\n%s", code, body)
	}
	code, body = get(t, srv.URL+"/jobs?name=report")
	if code != 200 || !strings.Contains(body, `href="/jobs/ok-1"`) || strings.Contains(body, `href="/jobs/bad-1"`) {
		t.Fatalf("name filter %d", code)
	}
	if code, _ = get(t, srv.URL+"/jobs?status=nonsense"); code != 400 {
		t.Fatalf("bad status: %d", code)
	}
	code, body = get(t, srv.URL+"/jobs/bad-1")
	if code != 200 || !strings.Contains(body, "md5 x, job says y") ||
		!strings.Contains(body, "http://temporal.example:8233/namespaces/default/workflows/file-bad-1/run-1/history") {
		t.Fatalf("job page %d:\n%s", code, body)
	}
	if code, _ = get(t, srv.URL+"/jobs/missing"); code != 404 {
		t.Fatalf("missing job: %d", code)
	}
	code, body = get(t, srv.URL+"/api/jobs/ok-1")
	var api struct {
		Job    audit.Job
		Events []audit.JobEvent
	}
	if code != 200 || json.Unmarshal([]byte(body), &api) != nil || api.Job.Status != audit.StatusSucceeded || len(api.Events) != 2 {
		t.Fatalf("api %d %s", code, body)
	}
	if code, body = get(t, srv.URL+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz %d %s", code, body)
	}
}
