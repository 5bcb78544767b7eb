package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

// `kafkasync reconcile` on the whole stack: a clean window prints its ledger and succeeds; with an
// object deleted behind kafkasync's back it lists the difference and fails (exit code 1, for cron).
// `kafkasync ui` reconciles the last day as it starts and publishes what it found as
// kafkasync_reconcile_differences, and a job submitted on it names the account that submitted it.
func TestReconcileAndUICommands(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaApache})
	ctx := context.Background()
	t.Setenv("KAFKASYNC_CONFIG", "")
	for _, kv := range env.Cfg.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen, key := fmt.Sprintf("127.0.0.1:%d", port), "reconcile-test-admin-key"
	t.Setenv("KAFKASYNC_UI_LISTEN", listen)
	t.Setenv("KAFKASYNC_UI_API_KEY", key)
	t.Setenv("KAFKASYNC_UI_RECONCILE_EVERY", "1m")

	store, err := audit.OpenMigrated(ctx, env.Cfg.Postgres.DSN.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	s3c, err := s3client.New(env.Cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	bucket, objKey, body := env.Cfg.S3.Bucket, "rec/r1.bin", []byte("the bytes of job r1")
	testenv.PutObject(t, s3c, bucket, objKey, body, sumOf(body))
	if err := store.Record(ctx, audit.Event{JobID: "r1", WorkflowID: "file-r1", RunID: "r", Seq: 1, Step: "upload", Outcome: "succeeded",
		Status: audit.StatusSucceeded, At: time.Now(), RemotePath: "/" + objKey, MD5Actual: sumOf(body), S3Bucket: bucket, S3Key: objKey,
		Finished: true}); err != nil {
		t.Fatal(err)
	}

	out, errw, err := run(t, "reconcile", "--since", "1h")
	if err != nil || !strings.Contains(out, "SUCCEEDED 1\n") || !strings.Contains(out, "objects checked: 1\n") ||
		!strings.Contains(out, "differences: 0\n") {
		t.Fatalf("clean window: %v\n%s%s", err, out, errw)
	}
	if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(objKey)}); err != nil {
		t.Fatal(err)
	}
	out, errw, err = run(t, "reconcile", "--since", "1h")
	if !errors.Is(err, errDifferences) || !strings.Contains(out, "differences: 1\n") ||
		!strings.Contains(out, fmt.Sprintf("%s  job r1  s3://%s/%s", reconcile.ObjectMissing, bucket, objKey)) {
		t.Fatalf("deleted object: %v\n%s%s", err, out, errw)
	}
	out, _, err = run(t, "reconcile", "--since", "1h", "--json")
	var rep reconcile.Report
	if !errors.Is(err, errDifferences) || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Differences) != 1 ||
		rep.Differences[0].Kind != reconcile.ObjectMissing || rep.Differences[0].JobID != "r1" {
		t.Fatalf("--json: %v\n%s", err, out)
	}

	stop := startUI(t)
	defer stop()
	if got := uiGauge(t, listen, key); got != "1" {
		t.Fatalf("kafkasync_reconcile_differences %s, want 1", got)
	}
	submitRecordsTheAccount(t, env, store, "http://"+listen)
}

// startUI runs `kafkasync ui` until the returned stop is called.
func startUI(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetArgs([]string{"ui"})
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		done <- root.ExecuteContext(ctx)
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kafkasync ui: %v", err)
		}
	}
}

// uiGauge waits for the dashboard's metrics to show kafkasync_reconcile_differences other than 0,
// and returns the gauge's value.
func uiGauge(t *testing.T, listen, key string) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/metrics", nil)
		req.Header.Set(ui.HeaderAPIKey, key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = resp.Status
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "kafkasync_reconcile_differences "); ok && v != "0" {
				return v
			}
		}
	}
	t.Fatalf("the dashboard's metrics never showed a reconciliation (last: %s)", last)
	return ""
}

// submitRecordsTheAccount submits a job through the dashboard's API with an operator's key: the
// message on the jobs topic names the key's account in its submitted_by header. A viewer's key is
// refused.
func submitRecordsTheAccount(t *testing.T, env *testenv.Env, store *audit.Store, base string) {
	t.Helper()
	keys := roleKeys(t, store, "-cli", audit.RoleViewer, audit.RoleOperator)
	post := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/jobs", strings.NewReader(`{"id":"sub-1","remote_path":"/in/sub-1.bin"}`))
		req.Header.Set(ui.HeaderAPIKey, key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(keys[audit.RoleViewer]); code != http.StatusForbidden {
		t.Fatalf("a viewer's submit: %d, want 403", code)
	}
	if code := post(keys[audit.RoleOperator]); code/100 != 2 {
		t.Fatalf("an operator's submit: %d", code)
	}
	want := "key:" + keys[audit.RoleOperator][:len(audit.APIKeyPrefix)+8] + "@operator-cli"
	var got []string
	for _, m := range testenv.ReadTopic(t, env.Cfg.Kafka.Brokers, env.Cfg.Kafka.JobsTopic) {
		for _, h := range m.Headers {
			if string(h.Key) == job.HeaderSubmittedBy {
				got = append(got, string(h.Value))
			}
		}
	}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("submitted_by headers %q, want [%s]", got, want)
	}
}
