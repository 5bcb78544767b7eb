package ui_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/ui"
)

// keyActor is how the dashboard records an action done with the API key.
func keyActor(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "api-key:" + hex.EncodeToString(sum[:])[:8]
}

// login logs a new browser in through the form and returns it with its CSRF token.
func login(t *testing.T, srv *httptest.Server) (*http.Client, string) {
	t.Helper()
	c := noRedirect()
	_, body, _ := do(t, c, "GET", srv.URL+"/login", "", nil)
	token := csrf(t, body)
	if code, body, _ := do(t, c, "POST", srv.URL+"/login", "", url.Values{"key": {apiKey}, "_csrf": {token}, "next": {"/"}}); code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", code, body)
	}
	return c, token
}

// sessionOf returns the session cookie c holds for srv.
func sessionOf(t *testing.T, c *http.Client, srv *httptest.Server) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "kafkasync_session" {
			return ck
		}
	}
	t.Fatal("no session cookie after login")
	return nil
}

// withCookie sends a GET carrying only ck, as someone holding a copied cookie would.
func withCookie(t *testing.T, u string, ck *http.Cookie) int {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	resp, err := noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sessionID is the stored id of a session cookie: the hex SHA-256 of its token's bytes.
func sessionID(t *testing.T, ck *http.Cookie) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(raw) != 32 {
		t.Fatalf("session cookie %q is not a 32-byte token", ck.Value)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func TestLogoutRevokesSession(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{APIKey: apiKey})
	ctx := context.Background()

	c, token := login(t, srv)
	ck := sessionOf(t, c, srv)
	if code := withCookie(t, srv.URL+"/api/v1/jobs", ck); code != 200 {
		t.Fatalf("copied cookie before logout: %d", code)
	}
	if code, _, _ := do(t, c, "POST", srv.URL+"/logout", "", url.Values{"_csrf": {token}}); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	if code := withCookie(t, srv.URL+"/api/v1/jobs", ck); code != 401 {
		t.Fatalf("the cookie of a logged-out session: %d, want 401", code)
	}
	var who, remote string
	var revoked *time.Time
	id := sessionID(t, ck)
	if err := f.store.Pool().QueryRow(ctx, `SELECT who, remote_addr, revoked_at FROM sessions WHERE id_sha256 = $1`, id).Scan(&who, &remote, &revoked); err != nil {
		t.Fatalf("session row: %v", err)
	}
	if who != keyActor(apiKey) || remote != "127.0.0.1" || revoked == nil {
		t.Fatalf("session row: who %q, remote %q, revoked %v", who, remote, revoked)
	}
	var leaked int
	f.store.Pool().QueryRow(ctx, `SELECT count(*) FROM sessions WHERE id_sha256 = $1 OR who LIKE '%' || $1 || '%'`, ck.Value).Scan(&leaked)
	if leaked != 0 {
		t.Fatal("the cookie's token is stored in the sessions table")
	}

	// An expired session is refused, whatever the cookie's own lifetime says.
	c2, _ := login(t, srv)
	ck2 := sessionOf(t, c2, srv)
	if _, err := f.store.Pool().Exec(ctx, `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id_sha256 = $1`, sessionID(t, ck2)); err != nil {
		t.Fatal(err)
	}
	if code := withCookie(t, srv.URL+"/api/v1/jobs", ck2); code != 401 {
		t.Fatalf("an expired session: %d, want 401", code)
	}

	// A session belongs to the key it was opened with: a dashboard with another key refuses it.
	c3, _ := login(t, srv)
	ck3 := sessionOf(t, c3, srv)
	other := f.server(t, ui.Options{APIKey: "another-key-0123456789abcdef"})
	if code := withCookie(t, other.URL+"/api/v1/jobs", ck3); code != 401 {
		t.Fatalf("a session of another key: %d, want 401", code)
	}
	for _, forged := range []string{"", "x", strings.Repeat("A", 43), fmt.Sprintf("%d.%s", time.Now().Add(time.Hour).Unix(), strings.Repeat("0", 64))} {
		if code := withCookie(t, srv.URL+"/api/v1/jobs", &http.Cookie{Name: ck.Name, Value: forged}); code != 401 {
			t.Errorf("forged cookie %q: %d, want 401", forged, code)
		}
	}
}

func TestWrongAPIKeyDoesNotSkipCSRF(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{APIKey: apiKey, Republish: f.kafka.Republish(jobsTopic)})
	c, token := login(t, srv)
	d := publishDeadLetter(t, f, "job-w", `{"id":"job-w","remote_path":"/in/w.bin"}`)
	const wrong = "wrong-key-0123456789abcdef"
	for _, path := range []string{fmt.Sprintf("/dlq/%d/%d/discard", d.Partition, d.Offset), fmt.Sprintf("/api/v1/dlq/%d/%d/discard", d.Partition, d.Offset)} {
		if code, body, _ := do(t, c, "POST", srv.URL+path, wrong, url.Values{}); code != http.StatusForbidden {
			t.Errorf("session cookie, wrong %s, no CSRF token, POST %s: %d %s, want 403", ui.HeaderAPIKey, path, code, body)
		}
	}
	got, err := f.store.DeadLetterAt(context.Background(), dlqTopic, d.Partition, d.Offset)
	if err != nil || got.State != audit.DLQOpen {
		t.Fatalf("letter after refused posts: %+v %v, want open", got, err)
	}
	// With the token, the session may act; the wrong key changes nothing about who it is.
	if code, _, _ := do(t, c, "POST", srv.URL+fmt.Sprintf("/dlq/%d/%d/discard", d.Partition, d.Offset), wrong, url.Values{"_csrf": {token}}); code != http.StatusSeeOther {
		t.Fatalf("session with its CSRF token: %d", code)
	}
}

func TestActionsRecordTheActor(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{APIKey: apiKey, Republish: f.kafka.Republish(jobsTopic)})
	ctx := context.Background()
	record(t, f.store, audit.Event{JobID: "job-s", Step: "dead_letter", Outcome: "succeeded", Status: audit.StatusDeadLettered,
		RemotePath: "/in/s.bin", At: time.Now(), Finished: true})
	bySession := publishDeadLetter(t, f, "job-s", `{"id":"job-s","remote_path":"/in/s.bin"}`)
	byKey := publishDeadLetter(t, f, "job-k", `{"id":"job-k","remote_path":"/in/k.bin"}`)

	c, token := login(t, srv)
	sessActor := "session:" + sessionID(t, sessionOf(t, c, srv))[:8]
	if code, _, _ := do(t, c, "POST", srv.URL+fmt.Sprintf("/dlq/%d/%d/discard", bySession.Partition, bySession.Offset), "", url.Values{"_csrf": {token}}); code != http.StatusSeeOther {
		t.Fatalf("discard by session: %d", code)
	}
	if code, body, _ := do(t, nil, "POST", srv.URL+fmt.Sprintf("/api/v1/dlq/%d/%d/replay", byKey.Partition, byKey.Offset), apiKey, nil); code != 200 {
		t.Fatalf("replay by key: %d %s", code, body)
	}
	check := func(d audit.DeadLetter, want string) {
		t.Helper()
		got, err := f.store.DeadLetterAt(ctx, dlqTopic, d.Partition, d.Offset)
		if err != nil || got.ActedBy == nil || *got.ActedBy != want {
			t.Fatalf("dead letter %d/%d acted_by %v (%v), want %q", d.Partition, d.Offset, deref(got.ActedBy), err, want)
		}
	}
	check(bySession, sessActor)
	check(byKey, keyActor(apiKey))
	evs, err := f.store.Events(ctx, "job-s")
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Detail == nil || !strings.Contains(*last.Detail, "by "+sessActor) {
		t.Fatalf("job-s timeline ends with %+v, want the session named", last)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestLoginRedirectStaysOnSite(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{APIKey: apiKey})
	c := noRedirect()
	_, body, _ := do(t, c, "GET", srv.URL+"/login", "", nil)
	token := csrf(t, body)
	for next, want := range map[string]string{
		"/dlq?state=open":               "/dlq?state=open",
		"/jobs/a%2Fb":                   "/jobs/a%2Fb",
		"//evil.example/":               "/",
		"/\\evil.example/":              "/",
		"/\t/evil.example/":             "/",
		"/\n/evil.example/":             "/",
		"/\r\nSet-Cookie: x=1":          "/",
		"/jobs\x00":                     "/",
		"/jobs\x7f":                     "/",
		"/jobs /x":                      "/",
		"/\u2028/evil.example/":         "/",
		"https://evil.example/":         "/",
		"javascript:alert(1)":           "/",
		"":                              "/",
		"/" + strings.Repeat("a", 4096): "/",
	} {
		code, _, hdr := do(t, c, "POST", srv.URL+"/login", "", url.Values{"key": {apiKey}, "_csrf": {token}, "next": {next}})
		if code != http.StatusSeeOther || hdr.Get("Location") != want {
			t.Errorf("next %q: %d, redirect %q, want %q", next, code, hdr.Get("Location"), want)
		}
	}
	_, body, _ = do(t, c, "GET", srv.URL+"/login?next="+url.QueryEscape("/\t/evil.example/"), "", nil)
	if !strings.Contains(body, `name="next" value="/"`) {
		t.Fatalf("login page keeps an unsafe next:\n%s", body)
	}
}
