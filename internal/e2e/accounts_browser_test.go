package e2e

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

// accountsDashboard serves the dashboard on a store of its own: managing accounts needs only
// PostgreSQL, not the pipeline's other servers.
func accountsDashboard(t *testing.T) (*audit.Store, *httptest.Server) {
	t.Helper()
	store := testenv.StartStore(t)
	srv := httptest.NewServer(ui.New(ui.Options{Store: store, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}))
	t.Cleanup(srv.Close)
	return store, srv
}

// An admin adds an operator through the accounts page, makes it a key (shown once) and sees the
// list; the operator and a viewer, logged in, have no Accounts link and are refused the page.
func TestAccountsInBrowser(t *testing.T) {
	store, srv := accountsDashboard(t)
	const adminPW, opPW = "the admin's long password", "the operator's password"
	if _, err := store.AddAccount(context.Background(), "admin", audit.RoleAdmin, adminPW, "test"); err != nil {
		t.Fatal(err)
	}
	shots := screenshotDir(t)
	b := chromium(t)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(b, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(b, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+sel+"`"+`).length`))
		if err != nil {
			t.Fatalf("count %s: %v", sel, err)
		}
		return n
	}
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
	login := func(name, pw string) {
		t.Helper()
		step("log in as "+name, chromedp.Navigate(srv.URL+"/login?next=/"), chromedp.WaitVisible(chromedp.CSS("#user")),
			chromedp.SendKeys(chromedp.CSS("#user"), name), chromedp.SendKeys(chromedp.CSS("#password"), pw),
			chromedp.Click(chromedp.CSS("#login-account")), chromedp.WaitVisible(chromedp.CSS("#who")))
	}

	login("admin", adminPW)
	step("open the accounts page from the nav", chromedp.Click(chromedp.CSS("#nav-accounts")), chromedp.WaitVisible(chromedp.CSS("#add-account")))
	step("add an operator", chromedp.SendKeys(chromedp.CSS("#new-name"), "ops-bot"),
		chromedp.SetValue(chromedp.CSS("#new-role"), audit.RoleOperator), chromedp.SendKeys(chromedp.CSS("#new-password"), opPW),
		chromedp.Click(chromedp.CSS("#add-account-submit")), chromedp.WaitVisible(chromedp.CSS("#notice")))
	if got := text("#acct-ops-bot .role"); got != audit.RoleOperator {
		t.Fatalf("the new account's role %q", got)
	}
	step("make a key", chromedp.Click(chromedp.CSS("#acct-ops-bot button.new-key")), chromedp.WaitVisible(chromedp.CSS("#new-key-value")))
	key := text("#new-key-value")
	if !strings.HasPrefix(key, audit.APIKeyPrefix) || !strings.Contains(text("#new-key"), "will not be shown again") {
		t.Fatalf("new key %q, note %q", key, text("#new-key"))
	}
	shot("accounts-key.png")
	if code := statusWithKey(t, srv.URL+"/api/v1/jobs", key); code != 200 {
		t.Fatalf("the key from the page: %d", code)
	}
	step("see the list", chromedp.Navigate(srv.URL+"/accounts"), chromedp.WaitVisible(chromedp.CSS("#acct-ops-bot")))
	if n := count("#keys tr.key"); n != 1 || count("#new-key") != 0 {
		t.Fatalf("%d keys listed, new key box shown %d times", n, count("#new-key"))
	}
	if got := text("#acct-admin"); !strings.Contains(got, "you") || count(`#acct-admin a.disable`) != 0 {
		t.Fatalf("the admin's own row offers to disable it: %q", got)
	}
	shot("accounts.png")
	step("log out", chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS(`a[href^="/login"]`)))

	login("ops-bot", opPW)
	if got := text("#who"); got != "account:ops-bot (operator)" {
		t.Fatalf("logged in as %q", got)
	}
	if n := count(`a[href="/accounts"]`); n != 0 {
		t.Fatalf("an operator sees %d Accounts links", n)
	}
	step("try the accounts page", chromedp.Navigate(srv.URL+"/accounts"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if got := text("main h1"); got != "403" || !strings.Contains(text("main .err"), "admin role") {
		t.Fatalf("an operator on /accounts sees %q: %q", got, text("main .err"))
	}

	// A viewer, added by the admin as well, is refused the page the same way.
	if _, err := store.AddAccount(context.Background(), "view-bot", audit.RoleViewer, "the viewer's password", "account:admin"); err != nil {
		t.Fatal(err)
	}
	step("log out", chromedp.Navigate(srv.URL+"/"), chromedp.Click(chromedp.CSS("header form button")),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/login"]`)))
	login("view-bot", "the viewer's password")
	if got := text("#who"); got != "account:view-bot (viewer)" || count(`a[href="/accounts"]`) != 0 {
		t.Fatalf("logged in as %q, %d Accounts links", got, count(`a[href="/accounts"]`))
	}
	step("try the accounts page as a viewer", chromedp.Navigate(srv.URL+"/accounts"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if got := text("main h1"); got != "403" {
		t.Fatalf("a viewer on /accounts sees %q", got)
	}
	shot("accounts-viewer-refused.png")
}

// statusWithKey answers the status of a GET with an API key.
func statusWithKey(t *testing.T, u, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set(ui.HeaderAPIKey, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
