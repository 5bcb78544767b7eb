package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kafkasync/kafkasync/internal/audit"
)

// AccountAdmin is what an admin does to accounts and their keys from the dashboard; each change
// records who made it (by).
type AccountAdmin interface {
	Accounts(ctx context.Context) ([]audit.Account, error)
	APIKeys(ctx context.Context, account string) ([]audit.APIKey, error)
	AddAccount(ctx context.Context, name, role, password, by string) (audit.Account, error)
	DisableAccount(ctx context.Context, name, by string) error
	AddAPIKey(ctx context.Context, account, by string) (string, audit.APIKey, error)
	RevokeAPIKey(ctx context.Context, prefix, by string) (audit.APIKey, error)
}

// accountView is an account with its keys, as the API and the page show them: no hash of either.
type accountView struct {
	audit.Account
	Keys []audit.APIKey `json:"keys"`
}

// newKey is a key just made: the only answer that holds the key itself.
type newKey struct {
	Key string `json:"key"`
	audit.APIKey
}

// accountsData is the accounts page; the API answers only Accounts.
type accountsData struct {
	Accounts []accountView `json:"accounts"`
	// Me is the caller's own account, which the page offers no way to disable.
	Me string `json:"-"`
	// Notice follows a change that went through, Error one that was refused.
	Notice string `json:"-"`
	Error  string `json:"-"`
	// NewKey is shown once, on the page that answers its making.
	NewKey *newKey `json:"-"`
	// Name and Role refill the add form after a refusal (never the password).
	Name string `json:"-"`
	Role string `json:"-"`
}

// accountRequest is the body of POST /api/v1/accounts. An empty password makes an account that
// uses API keys only.
type accountRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

var accountFields = []string{"name", "role", "password"}

func (h *handlers) accountList(ctx context.Context) ([]accountView, error) {
	accts, err := h.o.Store.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := h.o.Store.APIKeys(ctx, "")
	if err != nil {
		return nil, err
	}
	byAccount := map[string][]audit.APIKey{}
	for _, k := range keys {
		byAccount[k.Account] = append(byAccount[k.Account], k)
	}
	views := make([]accountView, len(accts))
	for i, a := range accts {
		views[i] = accountView{Account: a, Keys: byAccount[a.Name]}
		if views[i].Keys == nil {
			views[i].Keys = []audit.APIKey{}
		}
	}
	return views, nil
}

func (h *handlers) addAccount(c echo.Context, r accountRequest) (audit.Account, error) {
	actor := actorFrom(c)
	a, err := h.o.Store.AddAccount(c.Request().Context(), r.Name, r.Role, r.Password, actor)
	var bad *audit.InvalidError
	switch {
	case errors.As(err, &bad):
		return a, echo.NewHTTPError(http.StatusBadRequest, bad.Error())
	case errors.Is(err, audit.ErrAccountExists):
		return a, echo.NewHTTPError(http.StatusConflict, fmt.Sprintf("an account named %s exists (disabled accounts keep their names)", r.Name))
	case err != nil:
		return a, err
	}
	h.o.Logger.Info("account added", "account", a.Name, "role", a.Role, "password", a.HasPass, "actor", actor)
	return a, nil
}

// disableAccount disables an account and revokes its keys; its sessions end with their next
// request. The caller's own account is refused, so an admin never locks themselves out by a slip.
func (h *handlers) disableAccount(c echo.Context, name string) (audit.Account, error) {
	a, err := h.disableTarget(c, name)
	if err != nil {
		return a, err
	}
	ctx, actor := c.Request().Context(), actorFrom(c)
	err = h.o.Store.DisableAccount(ctx, name, actor)
	if errors.Is(err, audit.ErrNoAccount) { // disabled by someone else since the check
		return a, echo.NewHTTPError(http.StatusConflict, "account "+name+" is already disabled")
	}
	if err != nil {
		return a, err
	}
	h.o.Logger.Info("account disabled", "account", name, "actor", actor)
	return h.o.Store.Account(ctx, name)
}

// disableTarget is the account name names, if the caller may disable it.
func (h *handlers) disableTarget(c echo.Context, name string) (audit.Account, error) {
	if v, _ := callerFrom(c); v.account == name {
		return audit.Account{}, echo.NewHTTPError(http.StatusBadRequest, "you may not disable your own account ("+v.actor+"): ask another admin")
	}
	a, err := h.o.Store.Account(c.Request().Context(), name)
	switch {
	case errors.Is(err, audit.ErrNoAccount):
		return a, echo.NewHTTPError(http.StatusNotFound, "no account "+name)
	case err != nil:
		return a, err
	case a.DisabledAt != nil:
		return a, echo.NewHTTPError(http.StatusConflict, "account "+name+" is already disabled")
	}
	return a, nil
}

func (h *handlers) addKey(c echo.Context, name string) (newKey, error) {
	actor := actorFrom(c)
	key, k, err := h.o.Store.AddAPIKey(c.Request().Context(), name, actor)
	if errors.Is(err, audit.ErrNoAccount) {
		return newKey{}, echo.NewHTTPError(http.StatusNotFound, "no enabled account "+name)
	}
	if err != nil {
		return newKey{}, err
	}
	h.o.Logger.Info("API key added", "account", name, "prefix", k.Prefix, "actor", actor)
	return newKey{Key: key, APIKey: k}, nil
}

func (h *handlers) revokeKey(c echo.Context, prefix string) (audit.APIKey, error) {
	actor := actorFrom(c)
	k, err := h.o.Store.RevokeAPIKey(c.Request().Context(), prefix, actor)
	if errors.Is(err, audit.ErrNoAccount) {
		return k, echo.NewHTTPError(http.StatusNotFound, "no live key "+prefix)
	}
	if err != nil {
		return k, err
	}
	h.o.Logger.Info("API key revoked", "account", k.Account, "prefix", k.Prefix, "actor", actor)
	return k, nil
}

// ---- API

func (h *handlers) apiAccounts(c echo.Context) error {
	views, err := h.accountList(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, accountsData{Accounts: views})
}

func (h *handlers) apiAddAccount(c echo.Context) error {
	var r accountRequest
	if err := decodeJSON(c, &r, accountFields...); err != nil {
		return err
	}
	a, err := h.addAccount(c, r)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, a)
}

func (h *handlers) apiDisableAccount(c echo.Context) error {
	a, err := h.disableAccount(c, c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a)
}

func (h *handlers) apiAddKey(c echo.Context) error {
	k, err := h.addKey(c, c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, k)
}

func (h *handlers) apiRevokeKey(c echo.Context) error {
	k, err := h.revokeKey(c, c.Param("prefix"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, k)
}

// decodeJSON reads the body (bounded by limitBody) into v: one JSON object whose fields are some of
// names, spelt exactly so and each at most once. encoding/json alone would take "NAME" for name and
// keep the last of two, so a typo or a second value would pass unseen.
func decodeJSON(c echo.Context, v any, names ...string) error {
	body, err := io.ReadAll(c.Request().Body)
	if isTooLarge(err) {
		return tooLarge(maxBody)
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "read body: "+err.Error())
	}
	if err := exactFields(body, names); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body: "+err.Error())
	}
	return nil
}

// exactFields checks body is one JSON object of known, distinct field names and nothing after it.
func exactFields(body []byte, names []string) error {
	want := fmt.Errorf("the body must be one JSON object with the fields %s", strings.Join(names, ", "))
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return want
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return want
		}
		k, _ := t.(string)
		switch {
		case !slices.Contains(names, k):
			return fmt.Errorf("unknown field %q (fields: %s)", k, strings.Join(names, ", "))
		case seen[k]:
			return fmt.Errorf("field %q appears twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return want
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return want
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// ---- the page

func (h *handlers) accountsPage(c echo.Context) error {
	return h.renderAccounts(c, http.StatusOK, accountsData{Notice: c.QueryParam("done")})
}

// renderAccounts shows the accounts page with d's messages, under code.
func (h *handlers) renderAccounts(c echo.Context, code int, d accountsData) error {
	views, err := h.accountList(c.Request().Context())
	if err != nil {
		return err
	}
	v, _ := callerFrom(c)
	d.Accounts, d.Me = views, v.account
	return c.Render(code, "accounts.html", d)
}

// formDone answers a form's change with a redirect to the page and its notice, and a refusal with
// the page and its reason, under the refusal's status; other errors go to the error page.
func (h *handlers) formDone(c echo.Context, err error, notice string, refill accountsData) error {
	var he *echo.HTTPError
	if errors.As(err, &he) && he.Code < 500 {
		refill.Error = fmt.Sprint(he.Message)
		return h.renderAccounts(c, he.Code, refill)
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/accounts?done="+url.QueryEscape(notice))
}

func (h *handlers) addAccountForm(c echo.Context) error {
	r := accountRequest{Name: c.FormValue("name"), Role: c.FormValue("role"), Password: c.FormValue("password")}
	a, err := h.addAccount(c, r)
	return h.formDone(c, err, fmt.Sprintf("added account %s (%s)", a.Name, a.Role), accountsData{Name: r.Name, Role: r.Role})
}

// disableAccountPage is the confirmation step before a disable: the form on it does the deed.
func (h *handlers) disableAccountPage(c echo.Context) error {
	a, err := h.disableTarget(c, c.Param("name"))
	if err != nil {
		return err
	}
	keys, err := h.o.Store.APIKeys(c.Request().Context(), a.Name)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "account_disable.html", map[string]any{"Account": a, "LiveKeys": liveKeys(keys)})
}

func (h *handlers) disableAccountForm(c echo.Context) error {
	a, err := h.disableAccount(c, c.Param("name"))
	return h.formDone(c, err, "disabled account "+a.Name+": its keys are revoked and its sessions ended", accountsData{})
}

// addKeyForm shows the new key on the page that answers the form, never in a redirect: a URL is
// kept in the history and in logs.
func (h *handlers) addKeyForm(c echo.Context) error {
	k, err := h.addKey(c, c.Param("name"))
	if err != nil {
		return h.formDone(c, err, "", accountsData{})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return h.renderAccounts(c, http.StatusOK, accountsData{NewKey: &k})
}

func (h *handlers) revokeKeyForm(c echo.Context) error {
	k, err := h.revokeKey(c, c.Param("prefix"))
	return h.formDone(c, err, fmt.Sprintf("revoked key %s… of %s", k.Prefix, k.Account), accountsData{})
}
