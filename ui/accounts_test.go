package ui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/testenv"
	"github.com/kafkasync/kafkasync/ui"
)

const adminPW = "the admin's long password"

// startStore runs only a real PostgreSQL: accounts need no broker.
func startStore(t *testing.T) *fixture {
	t.Helper()
	return &fixture{store: testenv.StartStore(t)}
}

// accountsFixture is a dashboard with an admin, an operator and a viewer, each with a key.
type accountsFixture struct {
	*fixture
	srv  *httptest.Server
	keys map[string]audit.APIKey
	key  map[string]string
}

func startAccounts(t *testing.T) *accountsFixture {
	t.Helper()
	f := &accountsFixture{fixture: startStore(t), keys: map[string]audit.APIKey{}, key: map[string]string{}}
	f.srv = f.server(t, ui.Options{})
	for _, role := range []string{audit.RoleViewer, audit.RoleOperator, audit.RoleAdmin} {
		if _, err := f.store.AddAccount(context.Background(), "root-"+role, role, adminPW, "test"); err != nil {
			t.Fatal(err)
		}
		key, k, err := f.store.AddAPIKey(context.Background(), "root-"+role, "test")
		if err != nil {
			t.Fatal(err)
		}
		f.key[role], f.keys[role] = key, k
	}
	return f
}

// doJSON sends body as JSON with an API key.
func doJSON(t *testing.T, method, u, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, b, _ := send(t, http.DefaultClient, req, key)
	return resp.StatusCode, string(b)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return v
}

type apiAccount struct {
	audit.Account
	Keys []audit.APIKey `json:"keys"`
}

// An admin adds an account, makes and revokes its keys and disables it through the API; every
// change records the admin; the account's session and keys stop at once.
func TestAccountsAPI(t *testing.T) {
	f := startAccounts(t)
	api, admin := f.srv.URL+"/api/v1", f.key[audit.RoleAdmin]
	byKey := "key:" + f.keys[audit.RoleAdmin].Prefix + "@root-admin"

	code, body := doJSON(t, "POST", api+"/accounts", admin, `{"name":"olga","role":"operator","password":"olga's long password"}`)
	a := decode[audit.Account](t, body)
	if code != http.StatusCreated || a.Name != "olga" || a.Role != audit.RoleOperator || !a.HasPass || a.CreatedBy != byKey {
		t.Fatalf("add: %d %s", code, body)
	}
	if strings.Contains(body, "$2a$") || strings.Contains(body, "hash") {
		t.Fatalf("the answer holds a hash: %s", body)
	}
	for what, tc := range map[string]struct {
		body string
		code int
		want string
	}{
		"a duplicate":         {`{"name":"olga","role":"viewer","password":"another long password"}`, 409, "exists"},
		"a bad role":          {`{"name":"bob","role":"root","password":"bob's long password"}`, 400, "role"},
		"a short password":    {`{"name":"bob","role":"viewer","password":"short"}`, 400, "password"},
		"a bad name":          {`{"name":"Bob","role":"viewer"}`, 400, "account name"},
		"an unknown field":    {`{"name":"bob","role":"admin","password":"bob's long password","disabled":false}`, 400, `unknown field \"disabled\"`},
		"a field in capitals": {`{"NAME":"bob","role":"viewer"}`, 400, `unknown field \"NAME\"`},
		"a field twice":       {`{"name":"bob","role":"viewer","role":"admin"}`, 400, "twice"},
		"trailing data":       {`{"name":"bob","role":"viewer"} {}`, 400, "trailing"},
		"not an object":       {`["bob"]`, 400, "JSON object"},
		"a wrong type":        {`{"name":"bob","role":1}`, 400, "role"},
	} {
		if code, body := doJSON(t, "POST", api+"/accounts", admin, tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d naming %q", what, code, body, tc.code, tc.want)
		}
	}
	if _, err := f.store.Account(context.Background(), "bob"); err == nil {
		t.Fatal("a refused body added bob")
	}

	// The new account logs in; a key made for it works until it is revoked.
	olga, _, code := loginAs(t, f.srv, "olga", "olga's long password")
	if code != http.StatusSeeOther {
		t.Fatalf("olga's login: %d", code)
	}
	code, body = doJSON(t, "POST", api+"/accounts/olga/keys", admin, "")
	nk := decode[struct {
		Key string `json:"key"`
		audit.APIKey
	}](t, body)
	if code != http.StatusCreated || !strings.HasPrefix(nk.Key, audit.APIKeyPrefix) || !strings.HasPrefix(nk.Key, nk.Prefix) || nk.CreatedBy != byKey {
		t.Fatalf("new key: %d %s", code, body)
	}
	if code, _, _ := do(t, nil, "GET", api+"/jobs", nk.Key, nil); code != 200 {
		t.Fatalf("olga's new key: %d", code)
	}
	code, body = doJSON(t, "GET", api+"/accounts", admin, "")
	list := decode[struct {
		Accounts []apiAccount `json:"accounts"`
	}](t, body)
	if code != 200 || len(list.Accounts) != 4 || list.Accounts[0].Name != "olga" || len(list.Accounts[0].Keys) != 1 ||
		list.Accounts[0].LastLogin == nil || list.Accounts[0].Keys[0].LastUsed == nil {
		t.Fatalf("list: %d %s", code, body)
	}
	if strings.Contains(body, nk.Key) || strings.Contains(body, "hash") || strings.Contains(body, "$2a$") {
		t.Fatalf("the list shows a key or a hash: %s", body)
	}
	code, body = doJSON(t, "POST", api+"/keys/"+nk.Prefix+"/revoke", admin, "")
	if rk := decode[audit.APIKey](t, body); code != 200 || rk.RevokedAt == nil || rk.RevokedBy == nil || *rk.RevokedBy != byKey {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _, _ := do(t, nil, "GET", api+"/jobs", nk.Key, nil); code != 401 {
		t.Fatalf("a revoked key: %d", code)
	}
	if code, _ := doJSON(t, "POST", api+"/keys/"+nk.Prefix+"/revoke", admin, ""); code != 404 {
		t.Fatalf("revoking twice: %d", code)
	}

	// Disabled by an admin's session: olga's session and her other key stop at once.
	key2, _, err := f.store.AddAPIKey(context.Background(), "olga", "test")
	if err != nil {
		t.Fatal(err)
	}
	root, token, _ := loginAs(t, f.srv, "root-admin", adminPW)
	if code, body, _ := do(t, root, "POST", api+"/accounts/root-admin/disable", "", url.Values{"_csrf": {token}}); code != 400 || !strings.Contains(body, "your own account") {
		t.Fatalf("an admin disabling themselves: %d %s", code, body)
	}
	if code, _ := doJSON(t, "POST", api+"/accounts/root-admin/disable", admin, ""); code != 400 {
		t.Fatalf("an admin disabling themselves with their key: %d", code)
	}
	code, body, _ = do(t, root, "POST", api+"/accounts/olga/disable", "", url.Values{"_csrf": {token}})
	if d := decode[audit.Account](t, body); code != 200 || d.DisabledAt == nil || d.DisabledBy == nil || *d.DisabledBy != "account:root-admin" {
		t.Fatalf("disable: %d %s", code, body)
	}
	if code, _, _ := do(t, olga, "GET", api+"/jobs", "", nil); code != 401 {
		t.Fatalf("a disabled account's session: %d", code)
	}
	if code, _, _ := do(t, nil, "GET", api+"/jobs", key2, nil); code != 401 {
		t.Fatalf("a disabled account's key: %d", code)
	}
	if ks, _ := f.store.APIKeys(context.Background(), "olga"); ks[1].RevokedBy == nil || *ks[1].RevokedBy != "account:root-admin" {
		t.Fatalf("the disabled account's keys: %+v", ks)
	}
	for what, tc := range map[string]struct {
		path string
		code int
	}{
		"disabling twice":              {"/accounts/olga/disable", 409},
		"disabling nobody":             {"/accounts/nobody/disable", 404},
		"a key for a disabled account": {"/accounts/olga/keys", 404},
		"revoking an unknown key":      {"/keys/ks_unknown0/revoke", 404},
	} {
		if code, body := doJSON(t, "POST", api+tc.path, admin, ""); code != tc.code {
			t.Errorf("%s: %d %s, want %d", what, code, body, tc.code)
		}
	}
}

// adminRoutes are every route of the accounts page and API.
var adminRoutes = [][2]string{
	{"GET", "/api/v1/accounts"}, {"POST", "/api/v1/accounts"}, {"POST", "/api/v1/accounts/root-viewer/disable"},
	{"POST", "/api/v1/accounts/root-viewer/keys"}, {"POST", "/api/v1/keys/ks_AAAAAAAA/revoke"},
	{"GET", "/accounts"}, {"POST", "/accounts"}, {"GET", "/accounts/root-viewer/disable"}, {"POST", "/accounts/root-viewer/disable"},
	{"POST", "/accounts/root-viewer/keys"}, {"POST", "/keys/ks_AAAAAAAA/revoke"},
}

// A viewer and an operator get 403 naming the admin role on every accounts route, with their key
// or logged in, and see no Accounts link; an admin sees it.
func TestAccountsNeedAdmin(t *testing.T) {
	f := startAccounts(t)
	for _, role := range []string{audit.RoleViewer, audit.RoleOperator} {
		c, token, _ := loginAs(t, f.srv, "root-"+role, adminPW)
		for _, r := range adminRoutes {
			var form url.Values
			if r[0] == "POST" {
				form = url.Values{"_csrf": {token}, "name": {"eve"}, "role": {"admin"}, "password": {"eve's long password"}}
			}
			if code, body, _ := do(t, c, r[0], f.srv.URL+r[1], "", form); code != 403 || !strings.Contains(body, "admin role") {
				t.Errorf("%s logged in: %s %s: %d %s", role, r[0], r[1], code, body)
			}
			if code, body, _ := do(t, nil, r[0], f.srv.URL+r[1], f.key[role], nil); code != 403 || !strings.Contains(body, "admin role") {
				t.Errorf("%s's key: %s %s: %d %s", role, r[0], r[1], code, body)
			}
		}
		if _, body, _ := do(t, c, "GET", f.srv.URL+"/", "", nil); strings.Contains(body, `href="/accounts"`) {
			t.Errorf("a %s sees the Accounts link", role)
		}
	}
	if _, err := f.store.Account(context.Background(), "eve"); err == nil {
		t.Fatal("a refused request added eve")
	}
	if ks, _ := f.store.APIKeys(context.Background(), "root-viewer"); len(ks) != 1 {
		t.Fatalf("a refused request made a key: %+v", ks)
	}
	if code, _, hdr := do(t, nil, "GET", f.srv.URL+"/accounts", "", nil); code != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/login") {
		t.Fatalf("the page without a login: %d %s", code, hdr.Get("Location"))
	}
	root, _, _ := loginAs(t, f.srv, "root-admin", adminPW)
	if _, body, _ := do(t, root, "GET", f.srv.URL+"/", "", nil); !strings.Contains(body, `href="/accounts"`) {
		t.Fatal("an admin does not see the Accounts link")
	}
}

var newKeyRe = regexp.MustCompile(`id="new-key-value">(ks_[A-Za-z0-9_-]+)<`)

// The page's forms add an account, make a key shown once, revoke it and disable the account after
// a confirmation step, each followed by a message; refusals are shown on the page.
func TestAccountsPage(t *testing.T) {
	f := startAccounts(t)
	ctx := context.Background()
	root, token, _ := loginAs(t, f.srv, "root-admin", adminPW)
	page := f.srv.URL + "/accounts"
	code, body, _ := do(t, root, "GET", page, "", nil)
	if code != 200 || !strings.Contains(body, `id="acct-root-viewer"`) || !strings.Contains(body, `id="add-account"`) ||
		!strings.Contains(body, `href="/accounts/root-viewer/disable"`) || strings.Contains(body, `href="/accounts/root-admin/disable"`) {
		t.Fatalf("accounts page %d (the admin's own row must offer no disable):\n%s", code, body)
	}

	add := url.Values{"_csrf": {token}, "name": {"pete"}, "role": {"viewer"}, "password": {"pete's long password"}}
	code, _, hdr := do(t, root, "POST", page, "", add)
	if code != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/accounts?done=") {
		t.Fatalf("add form: %d %s", code, hdr.Get("Location"))
	}
	_, body, _ = do(t, root, "GET", f.srv.URL+hdr.Get("Location"), "", nil)
	if !strings.Contains(body, `id="notice"`) || !strings.Contains(body, "added account pete (viewer)") || !strings.Contains(body, `id="acct-pete"`) {
		t.Fatalf("after adding:\n%s", body)
	}
	if a, err := f.store.Account(ctx, "pete"); err != nil || a.CreatedBy != "account:root-admin" {
		t.Fatalf("pete: %+v %v", a, err)
	}
	if code, body, _ = do(t, root, "POST", page, "", add); code != 409 || !strings.Contains(body, `id="error"`) || !strings.Contains(body, "exists") {
		t.Fatalf("a duplicate through the form: %d\n%s", code, body)
	}
	short := url.Values{"_csrf": {token}, "name": {"quinn"}, "role": {"operator"}, "password": {"short"}}
	if code, body, _ = do(t, root, "POST", page, "", short); code != 400 || !strings.Contains(body, "password") || !strings.Contains(body, `value="quinn"`) {
		t.Fatalf("a short password through the form: %d\n%s", code, body)
	}
	pete, _, code := loginAs(t, f.srv, "pete", "pete's long password")
	if code != http.StatusSeeOther {
		t.Fatalf("pete's login: %d", code)
	}

	// A key: shown once, on the page that answers the form, and never again.
	code, body, hdr = do(t, root, "POST", page+"/pete/keys", "", url.Values{"_csrf": {token}})
	m := newKeyRe.FindStringSubmatch(body)
	if code != 200 || m == nil || !strings.Contains(body, "will not be shown again") || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("new key page %d:\n%s", code, body)
	}
	key := m[1]
	if code, _, _ := do(t, nil, "GET", f.srv.URL+"/api/v1/jobs", key, nil); code != 200 {
		t.Fatalf("the key from the page: %d", code)
	}
	if _, body, _ = do(t, root, "GET", page, "", nil); strings.Contains(body, key) {
		t.Fatal("the key is shown again")
	}
	ks, _ := f.store.APIKeys(ctx, "pete")
	code, _, hdr = do(t, root, "POST", f.srv.URL+"/keys/"+ks[0].Prefix+"/revoke", "", url.Values{"_csrf": {token}})
	if code != http.StatusSeeOther || !strings.Contains(hdr.Get("Location"), "revoked") {
		t.Fatalf("revoke form: %d %s", code, hdr.Get("Location"))
	}
	if code, _, _ := do(t, nil, "GET", f.srv.URL+"/api/v1/jobs", key, nil); code != 401 {
		t.Fatalf("a key revoked on the page: %d", code)
	}

	// Disabling asks first; the admin's own account cannot be.
	code, body, _ = do(t, root, "GET", page+"/pete/disable", "", nil)
	if code != 200 || !strings.Contains(body, `id="confirm-disable"`) || !strings.Contains(body, `action="/accounts/pete/disable"`) {
		t.Fatalf("confirmation page %d:\n%s", code, body)
	}
	if code, _, _ = do(t, root, "GET", page+"/root-admin/disable", "", nil); code != 400 {
		t.Fatalf("confirming one's own disable: %d", code)
	}
	if code, body, _ = do(t, root, "POST", page+"/root-admin/disable", "", url.Values{"_csrf": {token}}); code != 400 || !strings.Contains(body, "your own account") {
		t.Fatalf("disabling oneself through the form: %d\n%s", code, body)
	}
	if code, _, _ = do(t, root, "POST", page+"/pete/disable", "", url.Values{}); code != 403 {
		t.Fatalf("a disable without the CSRF token: %d", code)
	}
	code, _, hdr = do(t, root, "POST", page+"/pete/disable", "", url.Values{"_csrf": {token}})
	if code != http.StatusSeeOther || !strings.Contains(hdr.Get("Location"), "disabled") {
		t.Fatalf("disable form: %d %s", code, hdr.Get("Location"))
	}
	if a, _ := f.store.Account(ctx, "pete"); a.DisabledBy == nil || *a.DisabledBy != "account:root-admin" {
		t.Fatalf("pete disabled by %v", a.DisabledBy)
	}
	if code, _, hdr := do(t, pete, "GET", f.srv.URL+"/jobs", "", nil); code != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/login") {
		t.Fatalf("a disabled account's session: %d %s", code, hdr.Get("Location"))
	}
	if _, body, _ = do(t, root, "GET", page, "", nil); !strings.Contains(body, "by account:root-admin") {
		t.Fatalf("the page does not say who disabled pete:\n%s", body)
	}
}
