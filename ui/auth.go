package ui

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// HeaderAPIKey carries the API key on API calls.
const HeaderAPIKey = "X-API-Key"

const (
	sessionCookie = "kafkasync_session"
	sessionTTL    = 12 * time.Hour
	ctxAuthed     = "kafkasync.authed"
	ctxActor      = "kafkasync.actor"
)

// auth checks the API key and login sessions. A session cookie is "<expiry unix>.<hmac>", signed
// with the API key, so changing the key ends every session.
type auth struct {
	key        string
	publicRead bool
}

func (a *auth) keyOK(given string) bool {
	return a.key != "" && given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(a.key)) == 1
}

func (a *auth) sign(exp int64) string {
	m := hmac.New(sha256.New, []byte(a.key))
	m.Write([]byte("kafkasync-session:" + strconv.FormatInt(exp, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

func (a *auth) sessionOK(c echo.Context) bool {
	if a.key == "" {
		return false
	}
	ck, err := c.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	ts, mac, ok := strings.Cut(ck.Value, ".")
	exp, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || time.Now().Unix() > exp {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(a.sign(exp)))
}

// identify notes who is calling: "api-key", "session", or nobody.
func (a *auth) identify(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		switch {
		case a.keyOK(c.Request().Header.Get(HeaderAPIKey)):
			c.Set(ctxAuthed, true)
			c.Set(ctxActor, "api-key")
		case a.sessionOK(c):
			c.Set(ctxAuthed, true)
			c.Set(ctxActor, "session")
		}
		return next(c)
	}
}

func authedFrom(c echo.Context) bool {
	v, _ := c.Get(ctxAuthed).(bool)
	return v
}

func actorFrom(c echo.Context) string {
	v, _ := c.Get(ctxActor).(string)
	return v
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
		return echo.NewHTTPError(http.StatusUnauthorized, "log in or send the API key in "+HeaderAPIKey)
	}
}

// requireWrite admits the API key or a session; a session's request has passed the CSRF check.
func (a *auth) requireWrite(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.key == "" {
			return echo.NewHTTPError(http.StatusForbidden, "the dashboard is read-only: no ui.api_key is configured")
		}
		if !authedFrom(c) {
			return echo.NewHTTPError(http.StatusUnauthorized, "this action needs the API key (header "+HeaderAPIKey+") or a login")
		}
		return next(c)
	}
}

func (a *auth) loginPage(c echo.Context) error {
	return c.Render(http.StatusOK, "login.html", map[string]any{"Next": safeNext(c.QueryParam("next")), "Enabled": a.key != ""})
}

func (a *auth) login(c echo.Context) error {
	next := safeNext(c.FormValue("next"))
	if !a.keyOK(c.FormValue("key")) {
		return c.Render(http.StatusUnauthorized, "login.html", map[string]any{"Next": next, "Enabled": a.key != "", "Failed": true})
	}
	exp := time.Now().Add(sessionTTL).Unix()
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: strconv.FormatInt(exp, 10) + "." + a.sign(exp), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Scheme() == "https", MaxAge: int(sessionTTL.Seconds())})
	return c.Redirect(http.StatusSeeOther, next)
}

func (a *auth) logout(c echo.Context) error {
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return c.Redirect(http.StatusSeeOther, "/")
}

// safeNext keeps a post-login redirect on this site.
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.Contains(s, "\\") {
		return "/"
	}
	return s
}
