package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/ui"
)

// stalled is a body that sends its first bytes and then nothing for 8 s, like a client that opened
// a large upload and went quiet (the client's transport waits on it, so it cannot block forever).
func stalled(first string) io.Reader {
	return io.MultiReader(strings.NewReader(first), readerFunc(func([]byte) (int, error) {
		time.Sleep(8 * time.Second)
		return 0, io.ErrUnexpectedEOF
	}))
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func post(t *testing.T, u, key string, body io.Reader, size int64, ctype string) int {
	t.Helper()
	req, err := http.NewRequest("POST", u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size // -1: chunked, the size is only known by reading
	req.Header.Set("Content-Type", ctype)
	if key != "" {
		req.Header.Set(ui.HeaderAPIKey, key)
	}
	c := noRedirect()
	c.Timeout = 10 * time.Second
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s (%d bytes): %v", u, size, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestBodyLimits(t *testing.T) {
	var submitted []int
	srv := httptest.NewServer(ui.New(ui.Options{APIKey: apiKey, Submit: func(_ context.Context, msg []byte, _ string) (ui.SubmitResult, error) {
		submitted = append(submitted, len(msg))
		return ui.SubmitResult{JobID: "j"}, nil
	}}))
	defer srv.Close()
	const form, jsonType = "application/x-www-form-urlencoded", "application/json"
	cases := []struct {
		name, path, key string
		body            func() io.Reader
		size            int64
		ctype           string
		want            int
	}{
		{"login form announcing 40 MiB, stalled", "/login", "", func() io.Reader { return stalled("key=x&next=/") }, 40 << 20, form, 413},
		{"login form of 128 KiB, chunked", "/login", "", func() io.Reader { return chunked("key=" + strings.Repeat("a", 128<<10)) }, -1, form, 413},
		{"dead-letter form of 128 KiB", "/dlq/0/0/discard", "", func() io.Reader { return chunked("_csrf=" + strings.Repeat("a", 128<<10)) }, -1, form, 413},
		{"job announcing 40 MiB, stalled", "/api/v1/jobs", apiKey, func() io.Reader { return stalled(`{"remote_path":"/a`) }, 40 << 20, jsonType, 413},
		{"job of 1 MiB and a byte, chunked", "/api/v1/jobs", apiKey, func() io.Reader { return chunked(strings.Repeat("a", 1<<20+1)) }, -1, jsonType, 413},
		{"job of 512 KiB", "/api/v1/jobs", apiKey, func() io.Reader { return strings.NewReader(strings.Repeat("a", 512<<10)) }, 512 << 10, jsonType, 202},
		{"replay announcing 128 KiB of JSON", "/api/v1/dlq/0/0/replay", apiKey, func() io.Reader { return strings.NewReader(strings.Repeat("a", 128<<10)) }, 128 << 10, jsonType, 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if got := post(t, srv.URL+tc.path, tc.key, tc.body(), tc.size, tc.ctype); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("answered after %v: the body was waited for", d)
			}
		})
	}
	if len(submitted) != 1 || submitted[0] != 512<<10 {
		t.Fatalf("submitted %v, want one message of 512 KiB", submitted)
	}
}

// chunked hides the length of s, so the request goes out chunked.
func chunked(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) }

func TestReadyzNamesFailingComponentsOnly(t *testing.T) {
	checks := map[string]func(context.Context) error{
		"postgres": func(context.Context) error { return nil },
		"temporal": func(context.Context) error { return context.DeadlineExceeded },
		"kafka":    func(context.Context) error { return errString("dial tcp 10.1.2.3:9092: connection refused") },
	}
	srv := httptest.NewServer(ui.New(ui.Options{APIKey: apiKey, Ready: checks}))
	defer srv.Close()
	code, body, _ := do(t, nil, "GET", srv.URL+"/readyz", "", nil)
	var r struct {
		Ready   bool              `json:"ready"`
		Failing []string          `json:"failing"`
		Errors  map[string]string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("readyz %d %s: %v", code, body, err)
	}
	if code != 503 || r.Ready || strings.Join(r.Failing, ",") != "kafka,temporal" {
		t.Fatalf("readyz %d %s, want 503 naming kafka and temporal", code, body)
	}
	for _, leak := range []string{"10.1.2.3", "refused", "deadline", "postgres"} {
		if strings.Contains(body, leak) {
			t.Errorf("unauthenticated readyz shows %q: %s", leak, body)
		}
	}
	// The operator with the key sees why.
	code, body, _ = do(t, nil, "GET", srv.URL+"/readyz", apiKey, nil)
	if code != 503 || !strings.Contains(body, "connection refused") {
		t.Fatalf("readyz with the key %d %s", code, body)
	}
	delete(checks, "kafka")
	delete(checks, "temporal")
	if code, body, _ = do(t, nil, "GET", srv.URL+"/readyz", "", nil); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("readyz with every check passing: %d %s", code, body)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestMetricsNeedReadAccess(t *testing.T) {
	m := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "kafkasync_up 1\n") })
	private := httptest.NewServer(ui.New(ui.Options{APIKey: apiKey, Metrics: m}))
	defer private.Close()
	public := httptest.NewServer(ui.New(ui.Options{PublicRead: true, Metrics: m}))
	defer public.Close()
	if code, body, _ := do(t, nil, "GET", private.URL+"/metrics", "", nil); code != 401 || strings.Contains(body, "kafkasync_up") {
		t.Fatalf("private /metrics without the key: %d %s, want 401", code, body)
	}
	if code, _, _ := do(t, nil, "GET", private.URL+"/metrics", "wrong-key-0123456789abcdef", nil); code != 401 {
		t.Fatalf("private /metrics with a wrong key: %d, want 401", code)
	}
	if code, body, _ := do(t, nil, "GET", private.URL+"/metrics", apiKey, nil); code != 200 || !strings.Contains(body, "kafkasync_up 1") {
		t.Fatalf("private /metrics with the key: %d %s", code, body)
	}
	if code, body, _ := do(t, nil, "GET", public.URL+"/metrics", "", nil); code != 200 || !strings.Contains(body, "kafkasync_up 1") {
		t.Fatalf("public /metrics: %d %s", code, body)
	}
}
