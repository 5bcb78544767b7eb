package ui

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kafkasync/kafkasync/internal/audit"
)

// HeaderAPIKey carries the API key on API calls.
const HeaderAPIKey = "X-API-Key"

const (
	sessionCookie = "kafkasync_session"
	sessionTTL    = 12 * time.Hour
	ctxCaller     = "kafkasync.caller"
	// maxNext bounds a post-login redirect target.
	maxNext = 2048
)

// Accounts are the people and programs that may log in or send a key of their own (table accounts).
type Accounts interface {
	CheckPassword(ctx context.Context, name, password string) (audit.Account, error)
	AccountByKey(ctx context.Context, key string) (audit.Account, audit.APIKey, error)
	Account(ctx context.Context, name string) (audit.Account, error)
}

// Sessions keeps login sessions server-side (table sessions), so a logout ends one at once.
type Sessions interface {
	CreateSession(ctx context.Context, who, remoteAddr string, ttl time.Duration) (string, audit.Session, error)
	SessionByToken(ctx context.Context, token string) (audit.Session, error)
	RevokeSession(ctx context.Context, token string) error
}

// caller is who sent a request, once identify has checked its credential.
type caller struct {
	// actor is recorded with what the caller does: account:<name>, key:<prefix>@<account>, or for
	// the shared ui.api_key api-key:<8 hex> (session:<8 hex> through a login with it).
	actor string
	// role is what the caller may do (audit.RoleViewer, RoleOperator, RoleAdmin).
	role string
	// viaKey: the request carries the valid API key itself. Only then may it skip the CSRF check,
	// since no other site can make a browser send that header.
	viaKey bool
	// account is the caller's account, by its key or its login; "" for the shared key.
	account string
}

// auth checks the API key and login sessions. A session is a row of table sessions opened with the
// key; it holds the key's actor, so a new key ends the old key's sessions.
type auth struct {
	key        string
	keyActor   string
	publicRead bool
	sessions   Sessions // nil: nobody can log in
	accounts   Accounts // nil: only the shared key
	log        *slog.Logger
}

func newAuth(o Options) *auth {
	a := &auth{key: o.APIKey, publicRead: o.PublicRead, log: o.Logger}
	if o.Store != nil {
		a.sessions, a.accounts = o.Store, o.Store
	}
	if a.key != "" {
		// A short hash names the key in audit rows and logs without revealing it.
		sum := sha256.Sum256([]byte(a.key))
		a.keyActor = "api-key:" + hex.EncodeToString(sum[:4])
	}
	return a
}

func (a *auth) keyOK(given string) bool {
	return a.key != "" && given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(a.key)) == 1
}

// identify notes who is calling: the shared key or an account's key in X-API-Key, a live session,
// or nobody. A wrong key is nobody's: the request is then judged by its session, CSRF check
// included.
func (a *auth) identify(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		given := c.Request().Header.Get(HeaderAPIKey)
		if a.keyOK(given) {
			c.Set(ctxCaller, caller{actor: a.keyActor, role: audit.RoleAdmin, viaKey: true})
			return next(c)
		}
		if strings.HasPrefix(given, audit.APIKeyPrefix) && a.accounts != nil {
			acct, k, err := a.accounts.AccountByKey(c.Request().Context(), given)
			switch {
			case err == nil:
				c.Set(ctxCaller, caller{actor: k.Actor(), role: acct.Role, viaKey: true, account: acct.Name})
				return next(c)
			case !errors.Is(err, audit.ErrNoAccount):
				return echo.NewHTTPError(http.StatusServiceUnavailable, "accounts are unavailable: try again shortly").SetInternal(err)
			}
		}
		cl, err := a.session(c)
		switch {
		case err == nil:
			c.Set(ctxCaller, cl)
		case !errors.Is(err, audit.ErrNoSession):
			return echo.NewHTTPError(http.StatusServiceUnavailable, "sessions are unavailable: try again shortly").SetInternal(err)
		}
		return next(c)
	}
}

// session returns who the request's session cookie logged in as, or audit.ErrNoSession: a session
// of the shared key this dashboard no longer has, or of an account disabled since, is no session.
func (a *auth) session(c echo.Context) (caller, error) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil || !a.canLogin() {
		return caller{}, audit.ErrNoSession
	}
	ctx := c.Request().Context()
	s, err := a.sessions.SessionByToken(ctx, ck.Value)
	if err != nil {
		return caller{}, err
	}
	if name, ok := strings.CutPrefix(s.Who, "account:"); ok && a.accounts != nil {
		acct, err := a.accounts.Account(ctx, name)
		if errors.Is(err, audit.ErrNoAccount) || err == nil && acct.DisabledAt != nil {
			return caller{}, audit.ErrNoSession
		}
		if err != nil {
			return caller{}, err
		}
		return caller{actor: acct.Actor(), role: acct.Role, account: acct.Name}, nil
	}
	if a.key == "" || s.Who != a.keyActor {
		return caller{}, audit.ErrNoSession
	}
	return caller{actor: s.Actor(), role: audit.RoleAdmin}, nil
}

func callerFrom(c echo.Context) (caller, bool) {
	v, ok := c.Get(ctxCaller).(caller)
	return v, ok
}

func authedFrom(c echo.Context) bool {
	_, ok := callerFrom(c)
	return ok
}

func actorFrom(c echo.Context) string {
	v, _ := callerFrom(c)
	return v.actor
}

// needsCSRF: a request riding on a session cookie, which another site could make a browser send;
// and logging in, so no site can log a browser into a session of its choosing.
func needsCSRF(c echo.Context) bool {
	v, ok := callerFrom(c)
	if ok {
		return !v.viaKey
	}
	return c.Path() == "/login"
}

func csrfToken(c echo.Context) string {
	v, _ := c.Get("csrf").(string)
	return v
}

func (a *auth) requireRead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.publicRead || authedFrom(c) {
			return next(c)
		}
		return echo.NewHTTPError(http.StatusUnauthorized, "log in or send an API key in "+HeaderAPIKey)
	}
}

// require admits callers whose role allows need; a session's request has passed the CSRF check.
func (a *auth) require(need string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			v, ok := callerFrom(c)
			switch {
			case !ok && !a.canLogin():
				return echo.NewHTTPError(http.StatusForbidden, "the dashboard is read-only: no ui.api_key and no accounts store")
			case !ok:
				return echo.NewHTTPError(http.StatusUnauthorized, "this action needs an API key (header "+HeaderAPIKey+") or a login")
			case !audit.RoleAllows(v.role, need):
				return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("this action needs the %s role; %s is a %s", need, v.actor, v.role))
			}
			return next(c)
		}
	}
}

func (a *auth) loginPage(c echo.Context) error {
	return c.Render(http.StatusOK, "login.html", map[string]any{"Next": safeNext(c.QueryParam("next")), "Enabled": a.canLogin()})
}

func (a *auth) canLogin() bool { return a.sessions != nil && (a.key != "" || a.accounts != nil) }

// login opens a session for an account (name and password) or for the shared key's holder, and
// records where the login came from.
func (a *auth) login(c echo.Context) error {
	next := safeNext(c.FormValue("next"))
	who, err := a.loginWho(c)
	if errors.Is(err, audit.ErrNoAccount) {
		return c.Render(http.StatusUnauthorized, "login.html", map[string]any{"Next": next, "Enabled": a.canLogin(), "Failed": true})
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot log in now: try again shortly").SetInternal(err)
	}
	token, s, err := a.sessions.CreateSession(c.Request().Context(), who, c.RealIP(), sessionTTL)
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot log in now: try again shortly").SetInternal(err)
	}
	a.log.Info("dashboard login", "actor", s.Actor(), "who", s.Who, "remote", s.RemoteAddr, "expires", s.ExpiresAt)
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.Scheme() == "https", MaxAge: int(sessionTTL.Seconds())})
	return c.Redirect(http.StatusSeeOther, next)
}

// loginWho checks the login form: an account's name and password, or the shared key. It returns who
// the session is for, or audit.ErrNoAccount.
func (a *auth) loginWho(c echo.Context) (string, error) {
	if !a.canLogin() {
		return "", audit.ErrNoAccount
	}
	if name := c.FormValue("user"); name != "" {
		if a.accounts == nil {
			return "", audit.ErrNoAccount
		}
		acct, err := a.accounts.CheckPassword(c.Request().Context(), name, c.FormValue("password"))
		if err != nil {
			return "", err
		}
		return acct.Actor(), nil
	}
	if a.keyOK(c.FormValue("key")) {
		return a.keyActor, nil
	}
	return "", audit.ErrNoAccount
}

// logout revokes the session in the database, so a copy of the cookie is refused too.
func (a *auth) logout(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil && a.sessions != nil {
		err := a.sessions.RevokeSession(c.Request().Context(), ck.Value)
		if err != nil && !errors.Is(err, audit.ErrNoSession) {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot log out now: try again shortly").SetInternal(err)
		}
		if err == nil {
			a.log.Info("dashboard logout", "actor", actorFrom(c))
		}
	}
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return c.Redirect(http.StatusSeeOther, "/")
}

// safeNext keeps a post-login redirect on this site: an absolute path of printable ASCII without
// spaces or backslashes, not starting "//". Browsers drop tabs and newlines from a URL and read "\"
// as "/", so "/\t/evil.example" and "/\evil.example" would both lead to another host.
func safeNext(s string) string {
	if len(s) > maxNext || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		return "/"
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b >= 0x7f || b == '\\' {
			return "/"
		}
	}
	return s
}
