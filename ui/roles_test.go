package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/ui"
)

// loginAs logs a new browser in with an account's name and password.
func loginAs(t *testing.T, srv *httptest.Server, name, password string) (*http.Client, string, int) {
	t.Helper()
	c := noRedirect()
	_, body, _ := do(t, c, "GET", srv.URL+"/login", "", nil)
	token := csrf(t, body)
	code, _, _ := do(t, c, "POST", srv.URL+"/login", "", url.Values{"user": {name}, "password": {password}, "_csrf": {token}, "next": {"/"}})
	if code != http.StatusSeeOther {
		return c, "", code
	}
	_, body, _ = do(t, c, "GET", srv.URL+"/dlq", "", nil)
	return c, csrf(t, body), code
}

// roleAccounts adds an account of each role, named <role>-1 with password pw, and returns a key of
// each by role.
func roleAccounts(t *testing.T, s *audit.Store, pw string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	for _, role := range []string{audit.RoleViewer, audit.RoleOperator, audit.RoleAdmin} {
		if _, err := s.AddAccount(context.Background(), role+"-1", role, pw, "test"); err != nil {
			t.Fatal(err)
		}
		key, _, err := s.AddAPIKey(context.Background(), role+"-1", "test")
		if err != nil {
			t.Fatal(err)
		}
		keys[role] = key
	}
	return keys
}

// Each role may do what it is allowed and no more, logged in or with its own API key; every
// action records the account; a disabled account's keys and sessions stop at once.
func TestRolesAndAccountKeys(t *testing.T) {
	f := start(t)
	srv := f.server(t, ui.Options{Republish: f.kafka.Republish(jobsTopic)})
	ctx := context.Background()
	const pw = "a long enough password"
	keys := roleAccounts(t, f.store, pw)
	discard := func(d audit.DeadLetter) string {
		return fmt.Sprintf("%s/api/v1/dlq/%d/%d/discard", srv.URL, d.Partition, d.Offset)
	}

	// With its key: a viewer reads but may not discard; an operator may.
	d1 := publishDeadLetter(t, f, "r-1", `{"id":"r-1","remote_path":"/in/r1.bin"}`)
	if code, _, _ := do(t, nil, "GET", srv.URL+"/api/v1/jobs", keys[audit.RoleViewer], nil); code != 200 {
		t.Fatalf("viewer's key reading jobs: %d", code)
	}
	if code, body, _ := do(t, nil, "POST", discard(d1), keys[audit.RoleViewer], nil); code != 403 || !strings.Contains(body, "operator") {
		t.Fatalf("viewer's key discarding: %d %s", code, body)
	}
	if code, body, _ := do(t, nil, "POST", discard(d1), keys[audit.RoleOperator], nil); code != 200 {
		t.Fatalf("operator's key discarding: %d %s", code, body)
	}
	got, _ := f.store.DeadLetterAt(ctx, dlqTopic, d1.Partition, d1.Offset)
	if got.ActedBy == nil || !strings.HasPrefix(*got.ActedBy, "key:ks_") || !strings.HasSuffix(*got.ActedBy, "@operator-1") {
		t.Fatalf("discard recorded as %v, want the operator's key", got.ActedBy)
	}

	// Logged in: the page says who; a viewer's form post is refused, an admin's goes through.
	d2 := publishDeadLetter(t, f, "r-2", `{"id":"r-2","remote_path":"/in/r2.bin"}`)
	form := fmt.Sprintf("%s/dlq/%d/%d/discard", srv.URL, d2.Partition, d2.Offset)
	viewer, vtoken, code := loginAs(t, srv, "viewer-1", pw)
	if code != http.StatusSeeOther {
		t.Fatalf("viewer login: %d", code)
	}
	if code, body, _ := do(t, viewer, "GET", srv.URL+"/dlq", "", nil); code != 200 || !strings.Contains(body, "account:viewer-1 (viewer)") ||
		!strings.Contains(body, `id="role-note"`) || strings.Contains(body, "/discard") {
		t.Fatalf("the viewer's dead-letter page (%d) offers actions or does not say who:\n%s", code, body)
	}
	if code, _, _ := do(t, viewer, "POST", form, "", url.Values{"_csrf": {vtoken}}); code != 403 {
		t.Fatalf("viewer's form discard: %d", code)
	}
	admin, atoken, _ := loginAs(t, srv, "admin-1", pw)
	if code, _, _ := do(t, admin, "POST", form, "", url.Values{"_csrf": {atoken}}); code != http.StatusSeeOther {
		t.Fatalf("admin's form discard: %d", code)
	}
	if got, _ := f.store.DeadLetterAt(ctx, dlqTopic, d2.Partition, d2.Offset); got.ActedBy == nil || *got.ActedBy != "account:admin-1" {
		t.Fatalf("discard recorded as %v, want account:admin-1", got.ActedBy)
	}
	if _, _, code := loginAs(t, srv, "admin-1", "not the password at all"); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", code)
	}

	// Disabled: its key and its session are nobody's from the next request on.
	if err := f.store.DisableAccount(ctx, "admin-1", "test"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(t, nil, "GET", srv.URL+"/api/v1/jobs", keys[audit.RoleAdmin], nil); code != 401 {
		t.Fatalf("a disabled account's key: %d", code)
	}
	if code, _, _ := do(t, admin, "GET", srv.URL+"/api/v1/jobs", "", nil); code != 401 {
		t.Fatalf("a disabled account's session: %d", code)
	}
}

// GET /api/v1/reconcile needs a reader, takes a bounded window and answers the report.
func TestReconcileAPI(t *testing.T) {
	f := start(t)
	var gotSince time.Time
	srv := f.server(t, ui.Options{APIKey: apiKey, Reconcile: func(_ context.Context, since time.Time) (reconcile.Report, error) {
		gotSince = since
		p, off := int32(1), int64(7)
		return reconcile.Report{Since: since, Checked: 3,
			Ledger: []reconcile.Line{{Topic: "jobs", Source: "north", Consumed: 5, Archived: 3, DeadLettered: 1, Differing: 1}},
			Differences: []reconcile.Difference{{Kind: reconcile.ObjectMissing, JobID: "j", Bucket: "b", Key: "in/j.bin"},
				{Kind: reconcile.MessageWithoutWorkflow, JobID: "m", Topic: "jobs", Partition: &p, Offset: &off, Detail: "nothing started"}}}, nil
	}})
	if code, _, _ := do(t, nil, "GET", srv.URL+"/api/v1/reconcile", "", nil); code != 401 {
		t.Fatalf("without a key: %d", code)
	}
	for _, bad := range []string{"soon", "-1h", "800h"} {
		if code, _, _ := do(t, nil, "GET", srv.URL+"/api/v1/reconcile?since="+bad, apiKey, nil); code != 400 {
			t.Fatalf("since=%s: %d", bad, code)
		}
	}
	code, body, _ := do(t, nil, "GET", srv.URL+"/api/v1/reconcile?since=2h", apiKey, nil)
	if code != 200 || !strings.Contains(body, `"checked":3`) || !strings.Contains(body, `"kind":"object_missing"`) {
		t.Fatalf("reconcile: %d %s", code, body)
	}
	if d := time.Since(gotSince); d < 2*time.Hour || d > 2*time.Hour+time.Minute {
		t.Fatalf("window started %s ago, want 2h", d)
	}
	// The page: the ledger with its totals, each difference linked to its job, object or message.
	code, body, _ = do(t, nil, "GET", srv.URL+"/reconcile?since=1h", apiKey, nil)
	for _, want := range []string{`2 differences`, `<td>north</td><td>5</td><td>3</td><td>1</td>`, `href="/jobs/j"`,
		`href="/archive?bucket=b&amp;prefix=in%2fj.bin"`, `jobs/1@7`, `nothing started`, `value="1h0m0s" selected`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("reconcile page: %d, no %q in\n%s", code, want, body)
		}
	}
	if code, _, _ := do(t, nil, "GET", srv.URL+"/reconcile?since=soon", apiKey, nil); code != 400 {
		t.Fatalf("page with since=soon: %d", code)
	}
}
