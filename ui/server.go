// Package ui is the Echo dashboard: server-rendered pages over the audit tables (overview, jobs, job
// detail with live download progress, the dead-letter queue, the archive's objects, the ledger,
// and for admins the accounts and their API keys), links into the Temporal Web UI, and a JSON API
// under /api/v1 described by /api/v1/openapi.json. Templates and assets are embedded.
package ui

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"

	"github.com/kafkasync/kafkasync/internal/archive"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/reconcile"
)

//go:embed templates/*.html
var templates embed.FS

//go:embed static
var static embed.FS

//go:embed openapi.json
var openapi []byte

// Store is the part of the audit store the dashboard uses.
type Store interface {
	List(ctx context.Context, f audit.Filter) ([]audit.Job, error)
	Job(ctx context.Context, id string) (audit.Job, error)
	Events(ctx context.Context, id string) ([]audit.JobEvent, error)
	CountByStatus(ctx context.Context) (map[string]int64, error)
	Overview(ctx context.Context, now time.Time) (audit.Overview, error)
	DeadLetters(ctx context.Context, f audit.DLQFilter) ([]audit.DeadLetter, error)
	DeadLetterAt(ctx context.Context, topic string, partition int32, offset int64) (audit.DeadLetter, error)
	ResolveDeadLetter(ctx context.Context, topic string, partition int32, offset int64, action, actor string, publish audit.Publish) (audit.DeadLetter, error)
	Sessions
	Accounts
	AccountAdmin
	archive.Store
}

// Options configures the dashboard.
type Options struct {
	Store Store
	// TemporalUI is the Temporal Web UI base URL; Namespace its namespace. Empty: no links.
	TemporalUI string
	Namespace  string
	Logger     *slog.Logger
	// APIKey is the shared key of ui.api_key: an admin's (header X-API-Key, or a login with it).
	// Accounts (table accounts) log in with their password or send their own API keys.
	APIKey string
	// PublicRead serves the read-only pages and API without a key.
	PublicRead bool
	// RateLimit is requests per second per client address; 0: 50.
	RateLimit float64
	// DLQTopic is the dead-letter topic the store indexes; Republish sends a dead letter back to the
	// jobs topic (nil: replay unavailable); Submit publishes a new job message (nil: unavailable).
	DLQTopic  string
	Republish audit.Publish
	Submit    func(ctx context.Context, msg []byte, actor string) (SubmitResult, error)
	// Progress reads a running job's download progress from Temporal (nil: no live progress).
	Progress func(ctx context.Context, workflowID, runID string) (Progress, error)
	// Lag reads the bridge's consumer lag on the jobs topic (nil: not shown).
	Lag func() (kafkaops.Lag, error)
	// Ready are the dependencies /readyz checks, by name. Only callers with the key or a session see
	// why a check failed; anyone else sees which.
	Ready map[string]func(ctx context.Context) error
	// Metrics is served at /metrics to those who may read (nil: not served).
	Metrics http.Handler
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
	// Reconcile checks the jobs created since a time against the bucket (nil: not offered).
	Reconcile func(ctx context.Context, since time.Time) (reconcile.Report, error)
	// Sources names the SFTP sources, for the jobs filter (nil: no source filter offered).
	Sources []string
	// Archive offers the objects of the buckets: browsed, fetched, deleted (nil: not offered).
	Archive *ArchiveOptions
}

// SubmitResult is where a submitted job message went.
type SubmitResult struct {
	JobID      string `json:"job_id"`
	WorkflowID string `json:"workflow_id"`
	Partition  int32  `json:"partition"`
	Offset     int64  `json:"offset"`
}

type renderer struct {
	t       *template.Template
	archive bool
}

func (r renderer) Render(w io.Writer, name string, data any, c echo.Context) error {
	v, authed := callerFrom(c)
	return r.t.ExecuteTemplate(w, name, page{Data: data, CSRF: csrfToken(c), Authed: authed, Who: v.actor, Role: v.role,
		CanOperate: authed && audit.RoleAllows(v.role, audit.RoleOperator), CanAdmin: authed && audit.RoleAllows(v.role, audit.RoleAdmin),
		Archive: r.archive, Path: c.Request().URL.Path})
}

// page wraps every template's data with what the layout needs.
type page struct {
	Data   any
	CSRF   string
	Authed bool
	// Who and Role are the caller's; CanOperate: the role may submit, replay and discard; CanAdmin:
	// it may also delete objects and manage accounts and keys.
	Who, Role            string
	CanOperate, CanAdmin bool
	// Archive: the archive pages are offered.
	Archive bool
	Path    string
}

// New builds the dashboard's Echo server.
func New(o Options) *echo.Echo {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 50
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Renderer = renderer{t: template.Must(template.New("").Funcs(funcs(o)).ParseFS(templates, "templates/*.html")), archive: o.Archive != nil}
	e.HTTPErrorHandler = errorHandler(e, o.Logger)
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(middleware.Recover())
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection:         "0",
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		ContentSecurityPolicy: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
		ReferrerPolicy:        "same-origin",
	}))
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Response().Header().Set("Cross-Origin-Opener-Policy", "same-origin")
			c.Response().Header().Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
			return next(c)
		}
	})
	e.Use(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogURI: true, LogStatus: true, LogLatency: true, LogMethod: true, LogRemoteIP: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			o.Logger.Debug("http", "method", v.Method, "uri", v.URI, "status", v.Status, "latency", v.Latency, "remote", v.RemoteIP)
			return nil
		},
	}))
	probe := func(c echo.Context) bool {
		p := c.Request().URL.Path
		return p == "/healthz" || p == "/readyz" || p == "/metrics" || strings.HasPrefix(p, "/static/")
	}
	e.Use(middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: probe,
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(o.RateLimit), Burst: int(2 * o.RateLimit), ExpiresIn: 3 * time.Minute}),
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			return echo.NewHTTPError(http.StatusTooManyRequests, "too many requests: slow down")
		},
	}))
	e.Use(limitBody)
	a := newAuth(o)
	e.Use(a.identify)
	e.Use(middleware.CSRFWithConfig(middleware.CSRFConfig{
		// Only what a browser session can be made to send is checked (see needsCSRF).
		Skipper:        func(c echo.Context) bool { return probe(c) || !needsCSRF(c) },
		TokenLookup:    "header:X-CSRF-Token,form:_csrf",
		CookieName:     "kafkasync_csrf",
		CookiePath:     "/",
		CookieHTTPOnly: true,
		CookieSameSite: http.SameSiteStrictMode,
		ErrorHandler: func(error, echo.Context) error {
			return echo.NewHTTPError(http.StatusForbidden, "missing or stale CSRF token: reload the page and try again")
		},
	}))
	sub, _ := fs.Sub(static, "static")
	e.StaticFS("/static", sub)

	routes(e, &handlers{o: o}, a, o)
	return e
}

// routes registers the pages and the API, each group behind the role it needs.
func routes(e *echo.Echo, h *handlers, a *auth, o Options) {
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", h.readyz)
	e.GET("/login", a.loginPage)
	e.POST("/login", a.login)
	e.POST("/logout", a.logout)

	r := e.Group("", a.requireRead)
	if o.Metrics != nil {
		r.GET("/metrics", echo.WrapHandler(o.Metrics))
	}
	r.GET("/", h.overviewPage)
	r.GET("/overview/live", h.overviewLive)
	r.GET("/jobs", h.jobsPage)
	r.GET("/jobs/rows", h.jobsRows)
	r.GET("/jobs/:id", h.jobPage)
	r.GET("/jobs/:id/live", h.jobLive)
	r.GET("/dlq", h.dlqPage)
	r.GET("/reconcile", h.reconcilePage)
	r.GET("/archive", h.archivePage)
	w := e.Group("", a.require(audit.RoleOperator))
	w.POST("/dlq/:partition/:offset/replay", h.dlqActionForm(audit.DLQReplayed))
	w.POST("/dlq/:partition/:offset/discard", h.dlqActionForm(audit.DLQDiscarded))
	ad := e.Group("", a.require(audit.RoleAdmin))
	ad.POST("/archive/delete", h.archiveDeleteForm)
	ad.GET("/accounts", h.accountsPage)
	ad.POST("/accounts", h.addAccountForm)
	ad.GET("/accounts/:name/disable", h.disableAccountPage)
	ad.POST("/accounts/:name/disable", h.disableAccountForm)
	ad.POST("/accounts/:name/keys", h.addKeyForm)
	ad.POST("/keys/:prefix/revoke", h.revokeKeyForm)

	api := e.Group("/api/v1")
	api.GET("/openapi.json", func(c echo.Context) error { return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openapi) })
	ar := api.Group("", a.requireRead)
	ar.GET("/overview", h.apiOverview)
	ar.GET("/jobs", h.apiJobs)
	ar.GET("/jobs/:id", h.apiJob)
	ar.GET("/jobs/:id/progress", h.apiProgress)
	ar.GET("/dlq", h.apiDLQ)
	ar.GET("/reconcile", h.apiReconcile)
	ar.GET("/objects", h.apiObjects)
	ar.GET("/objects/content", h.objectContent)
	aw := api.Group("", a.require(audit.RoleOperator))
	aw.POST("/jobs", h.apiSubmit)
	aw.POST("/dlq/:partition/:offset/replay", h.apiDLQAction(audit.DLQReplayed))
	aw.POST("/dlq/:partition/:offset/discard", h.apiDLQAction(audit.DLQDiscarded))
	aa := api.Group("", a.require(audit.RoleAdmin))
	aa.GET("/accounts", h.apiAccounts)
	aa.POST("/accounts", h.apiAddAccount)
	aa.POST("/accounts/:name/disable", h.apiDisableAccount)
	aa.POST("/accounts/:name/keys", h.apiAddKey)
	aa.POST("/keys/:prefix/revoke", h.apiRevokeKey)
	aa.DELETE("/objects", h.apiDeleteObject)
}

// errorHandler answers JSON under /api/ and at /metrics, and a plain page elsewhere; it never shows
// internal errors (they are logged) beyond their message for 4xx.
func errorHandler(e *echo.Echo, log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code, msg := http.StatusInternalServerError, "internal error"
		if he, ok := err.(*echo.HTTPError); ok {
			code = he.Code
			msg = fmt.Sprint(he.Message)
			if he.Internal != nil && code >= 500 {
				log.Error("dashboard", "path", c.Request().URL.Path, "err", he.Internal)
			}
		} else {
			log.Error("dashboard", "path", c.Request().URL.Path, "err", err)
		}
		// Programs read the API and /metrics: they get JSON, never a login page.
		if p := c.Request().URL.Path; strings.HasPrefix(p, "/api/") || p == "/metrics" {
			_ = c.JSON(code, map[string]string{"error": msg})
			return
		}
		if code == http.StatusUnauthorized && c.Request().Method == http.MethodGet {
			_ = c.Redirect(http.StatusSeeOther, "/login?next="+url.QueryEscape(c.Request().URL.RequestURI()))
			return
		}
		_ = c.Render(code, "error.html", map[string]any{"Code": code, "Message": msg})
	}
}
