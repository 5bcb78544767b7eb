package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/chromedp/chromedp"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/dlq"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

const dashboardKey = "browser-test-key-0123456789"

// screenshotDir is where the browser test saves its screenshots: $KAFKASYNC_SCREENSHOTS, else the
// test's artifact folder (kept with go test -artifacts -outputdir DIR).
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("KAFKASYNC_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// chromium starts Debian's headless Chromium for the test.
func chromium(t *testing.T) context.Context {
	t.Helper()
	bin := os.Getenv("KAFKASYNC_CHROMIUM")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("chromium"); err != nil {
			t.Fatal("the browser test needs Chromium: `make deps` installs Debian's chromium package (or set KAFKASYNC_CHROMIUM)")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.WindowSize(1400, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil { // starts the browser
		t.Fatalf("start %s: %v", bin, err)
	}
	return ctx
}

func TestDashboardInBrowser(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaEmbedded, SFTPReadRate: 6 << 20})
	cfg := env.Cfg
	p := startPipeline(t, env, true)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	kc, err := kafkaops.Dial(cfg.Kafka.Brokers, "browser-test")
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	s3c, err := s3client.New(cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	idx := &kafkaops.Indexer{Kafka: kc, Store: p.store, Topic: cfg.Kafka.DLQTopic, Logger: env.Logger(t)}
	go idx.Run(ctx, 300*time.Millisecond)
	srv := httptest.NewServer(ui.New(ui.Options{
		Store: p.store, TemporalUI: "http://127.0.0.1:8233", Namespace: cfg.Temporal.Namespace, Logger: env.Logger(t),
		APIKey: dashboardKey, PublicRead: true, DLQTopic: cfg.Kafka.DLQTopic, Republish: kc.Republish(cfg.Kafka.JobsTopic),
		Progress: ui.TemporalProgress(p.client),
		Lag:      func() (kafkaops.Lag, error) { return kc.ConsumerLag(cfg.Kafka.JobsTopic, cfg.Kafka.Group) },
		Metrics:  metrics.Handler(),
		Reconcile: func(ctx context.Context, since time.Time) (reconcile.Report, error) {
			return reconcile.Check(ctx, reconcile.ForConfig(cfg, p.store, s3c, kc, p.client), since)
		},
	}))
	defer srv.Close()
	shots := screenshotDir(t)
	b := chromium(t)
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		file := filepath.Join(shots, name)
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", file, len(png))
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(b, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	value := func(sel string) int64 {
		t.Helper()
		r, err := chromedp.Run(b, chromedp.AttributeValue(chromedp.CSS(sel), "value"))
		if err != nil || !r.Exists {
			t.Fatalf("%s value: %v", sel, err)
		}
		n, _ := strconv.ParseInt(r.Value, 10, 64)
		return n
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(b, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}

	// 1. A 48 MiB download, throttled to 6 MB/s: its progress bar must move while we watch.
	sum := env.WriteFile(t, "big/large.bin", 48<<20, 11)
	p.publish(t, "large", fmt.Sprintf(`{"id":"large","remote_path":"/big/large.bin","md5":%q}`, sum))
	waitStatus(t, ctx, p.store, "large", audit.StatusDownloading)
	step("open the running job", chromedp.Navigate(srv.URL+"/jobs/large"), chromedp.WaitVisible(chromedp.CSS("#dl-progress")))
	v1 := value("#dl-progress")
	time.Sleep(2500 * time.Millisecond) // the page polls every second, the download heartbeats every 500 ms
	v2 := value("#dl-progress")
	if v2 <= v1 {
		t.Fatalf("progress bar did not advance: %d then %d bytes", v1, v2)
	}
	t.Logf("progress bar advanced from %d to %d bytes in 2.5 s: %s", v1, v2, text("#dl-text"))
	shot("job-downloading.png")
	href, err := chromedp.Run(b, chromedp.AttributeValue(chromedp.CSS("#temporal-link"), "href"))
	if err != nil || !strings.Contains(href.Value, "/namespaces/default/workflows/file-large/") {
		t.Fatalf("Temporal Web UI link %q (%v)", href.Value, err)
	}
	// The page reloads itself when the job ends.
	step("see the job succeed", chromedp.WaitVisible(chromedp.CSS("#status.st-succeeded")))
	if got := text("#timeline tbody tr:nth-last-child(2)"); !strings.Contains(got, "upload") {
		t.Fatalf("timeline's last step before the done event is %q", got)
	}
	if got := text("#timeline tbody tr:last-child"); !strings.Contains(got, "done_event") {
		t.Fatalf("timeline ends with %q", got)
	}
	shot("job-succeeded.png")

	// 2. A job for a missing file with a hostile name is dead-lettered; the DLQ page shows it as text.
	const evil = "/in/<script>alert(1)</script>.bin"
	p.publish(t, "evil", fmt.Sprintf(`{"id":"evil","remote_path":%q}`, evil))
	waitStatus(t, ctx, p.store, "evil", audit.StatusDeadLettered)
	dl := waitDeadLetters(t, ctx, p.store, "evil", 1)[0]
	row := fmt.Sprintf("#dl-%d-%d", dl.Partition, dl.Offset)
	step("open the dead-letter queue", chromedp.Navigate(srv.URL+"/dlq"), chromedp.WaitVisible(chromedp.CSS(row)))
	if got := text(row + " td:nth-child(4)"); !strings.Contains(got, "RemoteNotFound") && !strings.Contains(got, "not exist") {
		t.Fatalf("dead letter reason %q", got)
	}
	n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("main script").length`))
	if err != nil || n != 0 {
		t.Fatalf("%d script elements in the page body (%v): a file name was not escaped", n, err)
	}
	if n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("button.replay").length`)); err != nil || n != 0 {
		t.Fatalf("%d replay buttons before logging in (%v)", n, err)
	}
	shot("dlq.png")
	// A viewer sees the dead letters but no action, and is told why.
	if _, err := p.store.AddAccount(ctx, "vera", audit.RoleViewer, "vera's long password", "test"); err != nil {
		t.Fatal(err)
	}
	step("log in as a viewer", chromedp.Navigate(srv.URL+"/login?next=/dlq"), chromedp.WaitVisible(chromedp.CSS("#user")),
		chromedp.SendKeys(chromedp.CSS("#user"), "vera"), chromedp.SendKeys(chromedp.CSS("#password"), "vera's long password"),
		chromedp.Click(chromedp.CSS("#login-account")), chromedp.WaitVisible(chromedp.CSS("#role-note")))
	if got := text("#who"); got != "account:vera (viewer)" {
		t.Fatalf("logged in as %q", got)
	}
	if n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("button.replay, button.discard").length`)); err != nil || n != 0 {
		t.Fatalf("a viewer is offered %d actions (%v)", n, err)
	}
	shot("dlq-viewer.png")
	step("log out", chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS(`a[href^="/login"]`)))
	// An operator may replay and discard, and has no accounts page.
	if _, err := p.store.AddAccount(ctx, "olga", audit.RoleOperator, "olga's long password", "test"); err != nil {
		t.Fatal(err)
	}
	step("log in as an operator", chromedp.Navigate(srv.URL+"/login?next=/dlq"), chromedp.WaitVisible(chromedp.CSS("#user")),
		chromedp.SendKeys(chromedp.CSS("#user"), "olga"), chromedp.SendKeys(chromedp.CSS("#password"), "olga's long password"),
		chromedp.Click(chromedp.CSS("#login-account")), chromedp.WaitVisible(chromedp.CSS(row+" button.replay")))
	if got := text("#who"); got != "account:olga (operator)" {
		t.Fatalf("logged in as %q", got)
	}
	if n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("#nav-accounts, #role-note").length`)); err != nil || n != 0 {
		t.Fatalf("an operator sees %d accounts links or role notes (%v)", n, err)
	}
	step("replay", chromedp.Click(chromedp.CSS(row+" button.replay")), chromedp.WaitVisible(chromedp.CSS("#notice")))
	if got := text(row + " .dlq-state"); got != audit.DLQReplayed {
		t.Fatalf("state after replay %q", got)
	}
	if d, err := p.store.DeadLetterAt(ctx, dl.Topic, dl.Partition, dl.Offset); err != nil || d.ActedBy == nil || *d.ActedBy != "account:olga" {
		t.Fatalf("the replay is recorded as by %v (%v), want account:olga", d.ActedBy, err)
	}
	shot("dlq-replayed.png")

	// The replayed message is on the jobs topic once, and the job runs again under the same identity:
	// a new run of file-evil, dead-lettered again because the file is still missing.
	replayed := 0
	for _, m := range testenv.ReadTopic(t, cfg.Kafka.Brokers, cfg.Kafka.JobsTopic) {
		for _, h := range m.Headers {
			if string(h.Key) == dlq.HeaderReplayedFrom {
				replayed++
				if string(m.Key) != "evil" {
					t.Fatalf("replayed message key %q", m.Key)
				}
			}
		}
	}
	if replayed != 1 {
		t.Fatalf("%d replayed messages on the jobs topic, want 1", replayed)
	}
	again := waitDeadLetters(t, ctx, p.store, "evil", 2)
	if *again[0].WorkflowID != "file-evil" {
		t.Fatalf("second dead letter from workflow %v", again[0].WorkflowID)
	}

	// 3. The overview counts what happened.
	step("open the overview", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#count-succeeded")))
	if got := text("#count-succeeded"); got != "1" {
		t.Fatalf("overview succeeded count %q", got)
	}
	shot("overview.png")
	step("open the jobs list", chromedp.Navigate(srv.URL+"/jobs"), chromedp.WaitVisible(chromedp.CSS("#rows")))
	if got := text("#rows"); !strings.Contains(got, evil) {
		t.Fatalf("jobs list does not show the file name as text: %q", got)
	}
	shot("jobs.png")

	// 4. Prometheus sees the same: kafkasync's counters and the Temporal SDK's own metrics.
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kafkasync_jobs_total{event="succeeded",source="default"}`, `kafkasync_jobs_total{event="dead_lettered",source="default"}`,
		`kafkasync_bytes_total{step="download"}`, `kafkasync_step_duration_seconds_bucket{outcome="ok",step="download"`,
		`kafkasync_sftp_connections_in_use`, `temporal_request_total`, `temporal_workflow_completed_total`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if v := metricValue(string(body), `kafkasync_bytes_total{step="download"}`); v < 48<<20 {
		t.Errorf("download bytes counter %.0f, want at least %d", v, 48<<20)
	}

	// 5. The ledger balances: the large file archived, the evil one dead-lettered and its replay a
	// redelivery. Then its object is deleted behind kafkasync's back, and the page says so.
	waitStatus(t, ctx, p.store, "evil", audit.StatusDeadLettered)
	// The ledger counts what the bridge committed: the replay's offset is committed on the bridge's
	// next commit tick.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		lag, err := kc.ConsumerLag(cfg.Kafka.JobsTopic, cfg.Kafka.Group)
		if err == nil && lag.Total == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridge has not committed every job message after 30 s: %+v %v", lag, err)
		}
	}
	step("reconcile", chromedp.Navigate(srv.URL+"/reconcile?since=1h0m0s"), chromedp.WaitVisible(chromedp.CSS("#ledger-total")))
	if got := text("#verdict"); !strings.Contains(got, "balanced") {
		t.Fatalf("reconcile verdict %q; ledger %q; differences %q", got, text("#ledger"), text("#differences"))
	}
	if got := text("#ledger-total"); !strings.Contains(got, "all\t\t3\t1\t1\t0\t1\t0") {
		t.Fatalf("ledger totals %q, want 3 consumed: 1 archived, 1 dead-lettered, 1 redelivered", got)
	}
	shot("reconcile.png")
	if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(cfg.S3.Bucket), Key: aws.String("big/large.bin")}); err != nil {
		t.Fatal(err)
	}
	step("reconcile again", chromedp.Navigate(srv.URL+"/reconcile?since=1h0m0s"), chromedp.WaitVisible(chromedp.CSS("tr.difference")))
	if got := text("#differences tbody"); !strings.Contains(got, "object_missing") || !strings.Contains(got, "large") {
		t.Fatalf("differences %q", got)
	}
	shot("reconcile-difference.png")

	// 6. An admin may do what an operator may: it discards the replay's dead letter, recorded as it.
	var second audit.DeadLetter
	for _, d := range again {
		if d.Offset != dl.Offset || d.Partition != dl.Partition {
			second = d
		}
	}
	if _, err := p.store.AddAccount(ctx, "ada", audit.RoleAdmin, "ada's long password", "test"); err != nil {
		t.Fatal(err)
	}
	row2 := fmt.Sprintf("#dl-%d-%d", second.Partition, second.Offset)
	step("log out", chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS(`a[href^="/login"]`)))
	step("log in as an admin", chromedp.Navigate(srv.URL+"/login?next=/dlq"), chromedp.WaitVisible(chromedp.CSS("#user")),
		chromedp.SendKeys(chromedp.CSS("#user"), "ada"), chromedp.SendKeys(chromedp.CSS("#password"), "ada's long password"),
		chromedp.Click(chromedp.CSS("#login-account")), chromedp.WaitVisible(chromedp.CSS(row2+" button.discard")))
	if got := text("#who"); got != "account:ada (admin)" {
		t.Fatalf("logged in as %q", got)
	}
	step("discard", chromedp.Click(chromedp.CSS(row2+" button.discard")), chromedp.WaitVisible(chromedp.CSS("#notice")))
	if got := text(row2 + " .dlq-state"); got != audit.DLQDiscarded {
		t.Fatalf("state after discard %q", got)
	}
	if d, err := p.store.DeadLetterAt(ctx, second.Topic, second.Partition, second.Offset); err != nil || d.ActedBy == nil || *d.ActedBy != "account:ada" {
		t.Fatalf("the discard is recorded as by %v (%v), want account:ada", d.ActedBy, err)
	}
	shot("dlq-discarded.png")
}

// metricValue reads one sample from the Prometheus text format.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return -1
}

func waitStatus(t *testing.T, ctx context.Context, s *audit.Store, id, status string) {
	t.Helper()
	for {
		j, err := s.Job(ctx, id)
		if err == nil && j.Status == status {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s never reached %s (last: %+v, %v)", id, status, j, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitDeadLetters(t *testing.T, ctx context.Context, s *audit.Store, jobID string, n int) []audit.DeadLetter {
	t.Helper()
	for {
		all, err := s.DeadLetters(ctx, audit.DLQFilter{Limit: 1000})
		var mine []audit.DeadLetter
		for _, d := range all {
			if d.JobID != nil && *d.JobID == jobID {
				mine = append(mine, d)
			}
		}
		if err == nil && len(mine) >= n {
			return mine
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d dead letters for %s, want %d (%v)", len(mine), jobID, n, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
