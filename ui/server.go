// Package ui is the Echo dashboard: server-rendered pages over the audit table, with links into the
// Temporal Web UI, and a JSON API. Templates and assets are embedded.
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/kafkasync/kafkasync/internal/audit"
)

//go:embed templates/*.html
var templates embed.FS

//go:embed static
var static embed.FS

// Store is the part of the audit store the dashboard reads.
type Store interface {
	List(ctx context.Context, f audit.Filter) ([]audit.Job, error)
	Job(ctx context.Context, id string) (audit.Job, error)
	Events(ctx context.Context, id string) ([]audit.JobEvent, error)
	CountByStatus(ctx context.Context) (map[string]int64, error)
}

// Options configures the dashboard.
type Options struct {
	Store Store
	// TemporalUI is the Temporal Web UI base URL; Namespace its namespace. Empty: no links.
	TemporalUI string
	Namespace  string
	Logger     *slog.Logger
	// Ping checks the dependencies for /healthz; nil: always healthy.
	Ping func(ctx context.Context) error
}

type renderer struct{ t *template.Template }

func (r renderer) Render(w io.Writer, name string, data any, _ echo.Context) error {
	return r.t.ExecuteTemplate(w, name, data)
}

// New builds the dashboard's Echo server.
func New(o Options) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	funcs := template.FuncMap{
		"bytes":    humanBytes,
		"rate":     func(f *float64) string { return humanRate(f) },
		"dur":      func(d time.Duration) string { return d.Round(time.Millisecond).String() },
		"time":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
		"lower":    strings.ToLower,
		"deref":    func(s *string) string { return deref(s) },
		"wfURL":    func(wf, run string) string { return workflowURL(o.TemporalUI, o.Namespace, wf, run) },
		"statuses": func() []string { return audit.Statuses },
	}
	t := template.Must(template.New("").Funcs(funcs).ParseFS(templates, "templates/*.html"))
	e.Renderer = renderer{t: t}
	e.Use(middleware.Recover())
	if o.Logger != nil {
		e.Use(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
			LogURI: true, LogStatus: true, LogLatency: true, LogMethod: true,
			LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
				o.Logger.Debug("http", "method", v.Method, "uri", v.URI, "status", v.Status, "latency", v.Latency)
				return nil
			},
		}))
	}
	sub, _ := fs.Sub(static, "static")
	e.StaticFS("/static", sub)
	h := &handlers{o: o}
	e.GET("/", h.jobs)
	e.GET("/jobs", h.jobs)
	e.GET("/jobs/:id", h.job)
	e.GET("/api/jobs", h.apiJobs)
	e.GET("/api/jobs/:id", h.apiJob)
	e.GET("/healthz", h.healthz)
	return e
}

type handlers struct{ o Options }

type jobsPage struct {
	Jobs   []audit.Job
	Counts map[string]int64
	Status string
	Name   string
	Next   string
}

func (h *handlers) list(c echo.Context) (jobsPage, error) {
	f := audit.Filter{Status: strings.ToUpper(c.QueryParam("status")), Name: c.QueryParam("name"), Limit: 100}
	if f.Status != "" && !validStatus(f.Status) {
		return jobsPage{}, echo.NewHTTPError(http.StatusBadRequest, "unknown status "+f.Status)
	}
	if b := c.QueryParam("before"); b != "" {
		at, id, ok := strings.Cut(b, "|")
		ns, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil {
			return jobsPage{}, echo.NewHTTPError(http.StatusBadRequest, "bad page cursor")
		}
		f.BeforeAt, f.BeforeID = time.Unix(0, ns), id
	}
	jobs, err := h.o.Store.List(c.Request().Context(), f)
	if err != nil {
		return jobsPage{}, err
	}
	counts, err := h.o.Store.CountByStatus(c.Request().Context())
	if err != nil {
		return jobsPage{}, err
	}
	p := jobsPage{Jobs: jobs, Counts: counts, Status: f.Status, Name: f.Name}
	if len(jobs) == f.Limit {
		last := jobs[len(jobs)-1]
		q := url.Values{"before": {fmt.Sprintf("%d|%s", last.CreatedAt.UnixNano(), last.JobID)}}
		if f.Status != "" {
			q.Set("status", f.Status)
		}
		if f.Name != "" {
			q.Set("name", f.Name)
		}
		p.Next = "/jobs?" + q.Encode()
	}
	return p, nil
}

func (h *handlers) jobs(c echo.Context) error {
	p, err := h.list(c)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "jobs.html", p)
}

func (h *handlers) apiJobs(c echo.Context) error {
	p, err := h.list(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"jobs": p.Jobs, "counts": p.Counts, "next": p.Next})
}

type jobPage struct {
	Job    audit.Job
	Events []audit.JobEvent
}

func (h *handlers) load(c echo.Context) (jobPage, error) {
	id := c.Param("id")
	j, err := h.o.Store.Job(c.Request().Context(), id)
	if errors.Is(err, audit.ErrNotFound) {
		return jobPage{}, echo.NewHTTPError(http.StatusNotFound, "no job "+id)
	}
	if err != nil {
		return jobPage{}, err
	}
	ev, err := h.o.Store.Events(c.Request().Context(), id)
	return jobPage{Job: j, Events: ev}, err
}

func (h *handlers) job(c echo.Context) error {
	p, err := h.load(c)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "job.html", p)
}

func (h *handlers) apiJob(c echo.Context) error {
	p, err := h.load(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (h *handlers) healthz(c echo.Context) error {
	if h.o.Ping != nil {
		if err := h.o.Ping(c.Request().Context()); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "error": err.Error()})
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func validStatus(s string) bool {
	for _, v := range audit.Statuses {
		if v == s {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// workflowURL links one workflow run in the Temporal Web UI.
func workflowURL(base, ns, wf, run string) string {
	if base == "" {
		return ""
	}
	if ns == "" {
		ns = "default"
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history", strings.TrimRight(base, "/"),
		url.PathEscape(ns), url.PathEscape(wf), url.PathEscape(run))
}

func humanBytes(n *int64) string {
	if n == nil {
		return "—"
	}
	v := float64(*n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if v < 1024 || u == "TiB" {
			if u == "B" {
				return fmt.Sprintf("%d B", *n)
			}
			return fmt.Sprintf("%.1f %s", v, u)
		}
		v /= 1024
	}
	return ""
}

func humanRate(f *float64) string {
	if f == nil || *f <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MB/s", *f/1e6)
}
