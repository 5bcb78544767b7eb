package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/dlq"
	"github.com/kafkasync/kafkasync/internal/testenv"

	"github.com/IBM/sarama"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/ui"
)

const (
	apiKey    = "test-key-0123456789abcdef"
	jobsTopic = "jobs"
	dlqTopic  = "jobs.dlq"
)

type fixture struct {
	store *audit.Store
	kafka *kafkaops.Kafka
	k     *devstack.Kafka
}

// start runs a real PostgreSQL and a Kafka-protocol broker, once per test.
func start(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := testenv.StartStore(t)
	k, err := devstack.StartKafka(ctx, devstack.KafkaOptions{Kind: devstack.KafkaEmbedded, Topics: []string{jobsTopic, dlqTopic}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	kc, err := kafkaops.Dial(k.Brokers, "ui-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	return &fixture{store: store, kafka: kc, k: k}
}

func (f *fixture) server(t *testing.T, o ui.Options) *httptest.Server {
	t.Helper()
	o.Store, o.DLQTopic, o.TemporalUI, o.Namespace = f.store, dlqTopic, "http://temporal.example:8233", "default"
	o.Logger = slog.New(slog.NewTextHandler(tlog{t}, nil))
	if o.RateLimit == 0 {
		o.RateLimit = 1000
	}
	srv := httptest.NewServer(ui.New(o))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, c *http.Client, method, u, key string, form url.Values) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, b, _ := send(t, c, req, key)
	return resp.StatusCode, string(b), resp.Header
}

// send sends req with the API key (none when empty) on c (nil: a client that follows no redirects)
// and reads the whole answer; the error is the body's.
func send(t *testing.T, c *http.Client, req *http.Request, key string) (*http.Response, []byte, error) {
	t.Helper()
	if key != "" {
		req.Header.Set(ui.HeaderAPIKey, key)
	}
	if c == nil {
		c = noRedirect()
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func noRedirect() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func record(t *testing.T, s *audit.Store, evs ...audit.Event) {
	t.Helper()
	for i, ev := range evs {
		if ev.WorkflowID == "" {
			ev.WorkflowID = "file-" + ev.JobID
		}
		if ev.RunID == "" {
			ev.RunID = "run-1"
		}
		if ev.Seq == 0 {
			ev.Seq = i + 1
		}
		for range 2 { // a retried write changes nothing
			if err := s.Record(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestPagesFiltersAndEscaping(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{PublicRead: true, APIKey: apiKey})
	at := time.Now().Add(-10 * time.Minute)
	const evil = "/in/<script>alert(1)</script>.bin"
	record(t, f.store,
		audit.Event{JobID: "ok-1", Step: "queued", Outcome: "started", Status: audit.StatusQueued, RemotePath: "/in/report.csv", At: at},
		audit.Event{JobID: "ok-1", Step: "upload", Outcome: "succeeded", Status: audit.StatusSucceeded, RemotePath: "/in/report.csv",
			S3Bucket: "b", S3Key: "in/report.csv", Size: 2048, SizeKnown: true, BytesPerSec: 5e6, Started: true, Finished: true, At: at.Add(time.Second)},
		audit.Event{JobID: "bad-1", Step: "dead_letter", Outcome: "succeeded", Status: audit.StatusDeadLettered, RemotePath: evil,
			Error: "verify: md5 <b>x</b>, job says y", Finished: true, At: at.Add(2 * time.Second)},
	)
	code, body, hdr := do(t, nil, "GET", srv.URL+"/jobs", "", nil)
	if code != 200 || !strings.Contains(body, `href="/jobs/ok-1"`) || !strings.Contains(body, "2.0 KiB") {
		t.Fatalf("jobs page %d:\n%s", code, body)
	}
	if strings.Contains(body, "<script>alert(1)") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;.bin") {
		t.Fatal("file name not escaped on the jobs page")
	}
	for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
		if hdr.Get(h) != want {
			t.Errorf("header %s = %q, want %q", h, hdr.Get(h), want)
		}
	}
	if !strings.Contains(hdr.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("CSP %q", hdr.Get("Content-Security-Policy"))
	}
	_, body, _ = do(t, nil, "GET", srv.URL+"/jobs?status=dead-lettered", "", nil)
	if strings.Contains(body, `href="/jobs/ok-1"`) || !strings.Contains(body, `href="/jobs/bad-1"`) {
		t.Fatalf("status filter:\n%s", body)
	}
	_, body, _ = do(t, nil, "GET", srv.URL+"/jobs/rows?name=REPORT", "", nil)
	if !strings.Contains(body, `href="/jobs/ok-1"`) || strings.Contains(body, `href="/jobs/bad-1"`) || strings.Contains(body, "<html") {
		t.Fatalf("name filter fragment:\n%s", body)
	}
	if code, _, _ = do(t, nil, "GET", srv.URL+"/jobs?status=nonsense", "", nil); code != 400 {
		t.Fatalf("bad status: %d", code)
	}
	code, body, _ = do(t, nil, "GET", srv.URL+"/jobs/bad-1", "", nil)
	if code != 200 || !strings.Contains(body, "md5 &lt;b&gt;x&lt;/b&gt;, job says y") || strings.Contains(body, "<script>alert") ||
		!strings.Contains(body, "http://temporal.example:8233/namespaces/default/workflows/file-bad-1/run-1/history") {
		t.Fatalf("job page %d:\n%s", code, body)
	}
	if code, _, _ = do(t, nil, "GET", srv.URL+"/jobs/missing", "", nil); code != 404 {
		t.Fatalf("missing job: %d", code)
	}
	code, body, _ = do(t, nil, "GET", srv.URL+"/", "", nil)
	if code != 200 || !strings.Contains(body, `id="count-succeeded">1<`) || !strings.Contains(body, "50.0 %") {
		t.Fatalf("overview %d:\n%s", code, body)
	}
	var ov struct {
		FilesDay    int64    `json:"files_last_day"`
		BytesDay    int64    `json:"bytes_last_day"`
		SuccessRate *float64 `json:"success_rate_last_day"`
		Largest     []audit.Job
	}
	_, body, _ = do(t, nil, "GET", srv.URL+"/api/v1/overview", "", nil)
	if err := json.Unmarshal([]byte(body), &ov); err != nil || ov.FilesDay != 1 || ov.BytesDay != 2048 || ov.SuccessRate == nil || *ov.SuccessRate != 0.5 {
		t.Fatalf("api overview %v %s", err, body)
	}
	var jd struct {
		Job    audit.Job        `json:"job"`
		Events []audit.JobEvent `json:"events"`
	}
	_, body, _ = do(t, nil, "GET", srv.URL+"/api/v1/jobs/ok-1", "", nil)
	if err := json.Unmarshal([]byte(body), &jd); err != nil || jd.Job.Status != audit.StatusSucceeded || len(jd.Events) != 2 {
		t.Fatalf("api job %v %s", err, body)
	}
	if code, body, _ = do(t, nil, "GET", srv.URL+"/healthz", "", nil); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz %d %s", code, body)
	}
}

func TestPagingIsStable(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{PublicRead: true})
	at := time.Now().Add(-time.Hour)
	var evs []audit.Event
	for i := range 130 {
		// Groups of ten share a creation time: the cursor must break ties by job id.
		evs = append(evs, audit.Event{JobID: fmt.Sprintf("job-%03d", i), Step: "queued", Outcome: "started",
			Status: audit.StatusQueued, RemotePath: fmt.Sprintf("/in/f%03d", i), At: at.Add(time.Duration(i/10) * time.Second), Seq: 1})
	}
	record(t, f.store, evs...)
	seen := map[string]int{}
	var order []string
	next := "limit=40"
	for pages := 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		var page struct {
			Jobs []audit.Job `json:"jobs"`
			Next string      `json:"next"`
		}
		_, body, _ := do(t, nil, "GET", srv.URL+"/api/v1/jobs?"+next, "", nil)
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err, body)
		}
		if pages == 0 { // a job arriving while someone pages must not shift the later pages
			record(t, f.store, audit.Event{JobID: "late", Step: "queued", Outcome: "started", Status: audit.StatusQueued, RemotePath: "/in/late", At: time.Now(), Seq: 1})
		}
		for _, j := range page.Jobs {
			seen[j.JobID]++
			order = append(order, j.JobID)
		}
		next = page.Next
	}
	if len(seen) != 130 || len(order) != 130 {
		t.Fatalf("paged through %d jobs (%d distinct), want 130 once each", len(order), len(seen))
	}
	for i, id := range order {
		if want := fmt.Sprintf("job-%03d", 129-i); id != want {
			t.Fatalf("position %d: %s, want %s (newest first)", i, id, want)
		}
	}
	// The page's own "Older jobs" link is the API's next page, as a working query.
	_, body, _ := do(t, nil, "GET", srv.URL+"/jobs?limit=40", "", nil)
	m := regexp.MustCompile(`id="older" href="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no Older link on the first page")
	}
	_, body, _ = do(t, nil, "GET", srv.URL+html.UnescapeString(m[1]), "", nil)
	if !strings.Contains(body, "job-090") || strings.Contains(body, "job-091") { // the first page held "late" too
		t.Fatalf("the Older link %s does not lead to the second page", m[1])
	}
}

func TestAuthRequiredForChangesAndPrivateReads(t *testing.T) {
	f := start(t)
	private := f.server(t, ui.Options{APIKey: apiKey, Republish: f.kafka.Republish(jobsTopic)})
	readOnly := f.server(t, ui.Options{PublicRead: true})

	code, _, hdr := do(t, nil, "GET", private.URL+"/jobs", "", nil)
	if code != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/login") {
		t.Fatalf("private page without login: %d %s", code, hdr.Get("Location"))
	}
	if code, _, _ = do(t, nil, "GET", private.URL+"/api/v1/jobs", "", nil); code != 401 {
		t.Fatalf("private api without key: %d", code)
	}
	if code, _, _ = do(t, nil, "GET", private.URL+"/api/v1/jobs", "wrong-key-0123456789", nil); code != 401 {
		t.Fatalf("private api with a wrong key: %d", code)
	}
	if code, _, _ = do(t, nil, "GET", private.URL+"/api/v1/jobs", apiKey, nil); code != 200 {
		t.Fatalf("private api with the key: %d", code)
	}
	for _, path := range []string{"/api/v1/dlq/0/0/replay", "/api/v1/dlq/0/0/discard", "/api/v1/jobs"} {
		if code, _, _ = do(t, nil, "POST", private.URL+path, "", nil); code != 401 {
			t.Errorf("POST %s without key: %d, want 401", path, code)
		}
		// Without ui.api_key that key is nobody's; accounts could still log in.
		if code, _, _ = do(t, nil, "POST", readOnly.URL+path, apiKey, nil); code != 401 {
			t.Errorf("POST %s with a key a dashboard without ui.api_key does not have: %d, want 401", path, code)
		}
	}
	if code, _, _ = do(t, nil, "POST", private.URL+"/dlq/0/0/discard", "", url.Values{}); code != 403 && code != 401 {
		t.Fatalf("form post without session: %d", code)
	}

	// A browser session: log in with the key through the form, which needs the CSRF token.
	c := noRedirect()
	_, body, _ := do(t, c, "GET", private.URL+"/login?next=/dlq", "", nil)
	token := csrf(t, body)
	if code, _, _ = do(t, c, "POST", private.URL+"/login", "", url.Values{"key": {"nope"}, "_csrf": {token}, "next": {"/dlq"}}); code != 401 {
		t.Fatalf("login with a wrong key: %d", code)
	}
	if code, _, hdr = do(t, c, "POST", private.URL+"/login", "", url.Values{"key": {apiKey}, "next": {"/dlq"}}); code != 403 {
		t.Fatalf("login without the CSRF token: %d", code)
	}
	code, _, hdr = do(t, c, "POST", private.URL+"/login", "", url.Values{"key": {apiKey}, "_csrf": {token}, "next": {"//evil.example/"}})
	if code != http.StatusSeeOther || hdr.Get("Location") != "/" {
		t.Fatalf("login: %d, redirect %q (an off-site next must become /)", code, hdr.Get("Location"))
	}
	if code, _, _ = do(t, c, "GET", private.URL+"/dlq", "", nil); code != 200 {
		t.Fatalf("dlq page with a session: %d", code)
	}
	d := publishDeadLetter(t, f, "job-s", `{"id":"job-s","remote_path":"/in/s.bin"}`)
	path := fmt.Sprintf("/dlq/%d/%d/discard", d.Partition, d.Offset)
	if code, _, _ = do(t, c, "POST", private.URL+path, "", url.Values{}); code != 403 {
		t.Fatalf("session post without CSRF token: %d, want 403", code)
	}
	if code, _, hdr = do(t, c, "POST", private.URL+path, "", url.Values{"_csrf": {token}}); code != http.StatusSeeOther {
		t.Fatalf("session post with CSRF token: %d", code)
	}
	got, err := f.store.DeadLetterAt(context.Background(), dlqTopic, d.Partition, d.Offset)
	if err != nil || got.State != audit.DLQDiscarded || got.ActedBy == nil || !strings.HasPrefix(*got.ActedBy, "session:") {
		t.Fatalf("discard by session: %+v %v", got, err)
	}
}

func csrf(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`name="_csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in\n%s", body)
	}
	return m[1]
}

// publishDeadLetter writes a dead letter the way the workflow does and indexes it.
func publishDeadLetter(t *testing.T, f *fixture, jobID, value string) audit.DeadLetter {
	t.Helper()
	p, err := sarama.NewSyncProducer(f.k.Brokers, producerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: dlqTopic, Key: sarama.StringEncoder(jobID), Value: sarama.StringEncoder(value),
		Headers: []sarama.RecordHeader{
			{Key: []byte(dlq.HeaderReason), Value: []byte("verify: md5 mismatch <i>twice</i>")},
			{Key: []byte(dlq.HeaderStage), Value: []byte("verify")},
			{Key: []byte(dlq.HeaderAttempts), Value: []byte("2")},
			{Key: []byte(dlq.HeaderWorkflowID), Value: []byte("file-" + jobID)},
			{Key: []byte(dlq.HeaderJobID), Value: []byte(jobID)},
		}})
	if err != nil {
		t.Fatal(err)
	}
	x := &kafkaops.Indexer{Kafka: f.kafka, Store: f.store, Topic: dlqTopic}
	if _, err := x.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	d, err := f.store.DeadLetterAt(context.Background(), dlqTopic, part, off)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func producerConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	return c
}

func TestDeadLetterReplayOnceAndDiscardAudited(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{APIKey: apiKey, Republish: f.kafka.Republish(jobsTopic)})
	record(t, f.store, audit.Event{JobID: "job-a", Step: "dead_letter", Outcome: "succeeded", Status: audit.StatusDeadLettered,
		RemotePath: "/in/a.bin", At: time.Now(), Finished: true})
	a := publishDeadLetter(t, f, "job-a", `{"id":"job-a","remote_path":"/in/a.bin","md5":"00000000000000000000000000000000"}`)
	b := publishDeadLetter(t, f, "job-b", `{"id":"job-b","remote_path":"/in/<script>alert(1)</script>.bin"}`)

	// Indexing again finds nothing new.
	x := &kafkaops.Indexer{Kafka: f.kafka, Store: f.store, Topic: dlqTopic}
	if n, err := x.CatchUp(context.Background()); err != nil || n != 0 {
		t.Fatalf("second catch-up indexed %d (%v), want 0", n, err)
	}
	code, body, _ := do(t, nil, "GET", srv.URL+"/dlq", apiKey, nil)
	if code != 200 || !strings.Contains(body, "md5 mismatch &lt;i&gt;twice&lt;/i&gt;") || strings.Contains(body, "<script>alert") ||
		!strings.Contains(body, fmt.Sprintf(`id="dl-%d-%d"`, a.Partition, a.Offset)) {
		t.Fatalf("dlq page %d:\n%s", code, body)
	}

	// Five replays of the same letter at once publish exactly one job message.
	replay := fmt.Sprintf("%s/api/v1/dlq/%d/%d/replay", srv.URL, a.Partition, a.Offset)
	codes := make(chan int, 5)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			code, _, _ := do(t, nil, "POST", replay, apiKey, nil)
			codes <- code
		})
	}
	wg.Wait()
	close(codes)
	byCode := map[int]int{}
	for c := range codes {
		byCode[c]++
	}
	if byCode[200] != 1 || byCode[409] != 4 {
		t.Fatalf("concurrent replays answered %v, want one 200 and four 409", byCode)
	}
	msgs := testenv.ReadTopic(t, f.k.Brokers, jobsTopic)
	if len(msgs) != 1 || string(msgs[0].Key) != "job-a" || string(msgs[0].Value) != string(a.Value) {
		t.Fatalf("jobs topic holds %d messages, want exactly the replayed one", len(msgs))
	}
	if h := msgs[0].Headers; len(h) != 1 || string(h[0].Key) != dlq.HeaderReplayedFrom ||
		string(h[0].Value) != fmt.Sprintf("%s/%d/%d", dlqTopic, a.Partition, a.Offset) {
		t.Fatalf("replay headers %v", h)
	}
	got, _ := f.store.DeadLetterAt(context.Background(), dlqTopic, a.Partition, a.Offset)
	if got.State != audit.DLQReplayed || got.ReplayOffset == nil || *got.ReplayOffset != msgs[0].Offset {
		t.Fatalf("replayed letter %+v", got)
	}

	// Discard: kept on the page, recorded; a discarded letter cannot be replayed.
	discard := fmt.Sprintf("%s/api/v1/dlq/%d/%d/discard", srv.URL, b.Partition, b.Offset)
	if code, body, _ = do(t, nil, "POST", discard, apiKey, nil); code != 200 {
		t.Fatalf("discard %d %s", code, body)
	}
	if code, _, _ = do(t, nil, "POST", strings.Replace(discard, "discard", "replay", 1), apiKey, nil); code != 409 {
		t.Fatalf("replay of a discarded letter: %d", code)
	}
	if code, _, _ = do(t, nil, "POST", srv.URL+"/api/v1/dlq/0/999999/discard", apiKey, nil); code != 404 {
		t.Fatalf("discard of a missing letter: %d", code)
	}
	var list struct {
		Letters []audit.DeadLetter `json:"dead_letters"`
	}
	_, body, _ = do(t, nil, "GET", srv.URL+"/api/v1/dlq?state=discarded", apiKey, nil)
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Letters) != 1 || *list.Letters[0].JobID != "job-b" ||
		*list.Letters[0].ActedBy != keyActor(apiKey) {
		t.Fatalf("discarded list %v %s", err, body)
	}
	// The job that had a row shows the replay in its timeline.
	evs, err := f.store.Events(context.Background(), "job-a")
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Step != "dead_letter" || last.Outcome != audit.DLQReplayed || !strings.Contains(*last.Detail, "republished") {
		t.Fatalf("job-a timeline ends with %+v", last)
	}
	if len(testenv.ReadTopic(t, f.k.Brokers, jobsTopic)) != 1 {
		t.Fatal("discard published something")
	}
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	e := ui.New(ui.Options{Metrics: http.NotFoundHandler()})
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/openapi.json", nil))
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc.OpenAPI == "" {
		t.Fatalf("openapi.json: %v", err)
	}
	param := regexp.MustCompile(`:(\w+)`)
	routes := map[string]bool{}
	for _, r := range e.Routes() {
		p, ok := strings.CutPrefix(r.Path, "/api/v1")
		if !ok || strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		p = param.ReplaceAllString(p, "{$1}")
		routes[strings.ToLower(r.Method)+" "+p] = true
		if _, ok := doc.Paths[p][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s is not in openapi.json", r.Method, r.Path)
		}
	}
	if len(routes) < 8 {
		t.Fatalf("only %d API routes", len(routes))
	}
	// And the other way: everything the document describes is served.
	for p, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" && !routes[method+" "+p] {
				t.Errorf("openapi.json describes %s %s, which the dashboard does not serve", strings.ToUpper(method), p)
			}
		}
	}
}

func TestRateLimit(t *testing.T) {
	srv := httptest.NewServer(ui.New(ui.Options{PublicRead: true, RateLimit: 2}))
	defer srv.Close()
	limited := 0
	for range 10 {
		if code, _, _ := do(t, nil, "GET", srv.URL+"/api/v1/openapi.json", "", nil); code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("10 requests in a burst at 2/s: none refused")
	}
}
