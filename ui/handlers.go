package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/reconcile"
)

type handlers struct{ o Options }

// ---- overview

type overviewData struct {
	audit.Overview
	Lag    *kafkaops.Lag `json:"consumer_lag,omitempty"`
	LagErr string        `json:"consumer_lag_error,omitempty"`
}

func (h *handlers) overview(c echo.Context) (overviewData, error) {
	ov, err := h.o.Store.Overview(c.Request().Context(), h.o.Now())
	if err != nil {
		return overviewData{}, err
	}
	d := overviewData{Overview: ov}
	if h.o.Lag != nil {
		if l, err := h.o.Lag(); err != nil {
			d.LagErr = err.Error()
		} else {
			d.Lag = &l
		}
	}
	return d, nil
}

func (h *handlers) overviewPage(c echo.Context) error {
	d, err := h.overview(c)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "overview.html", d)
}

func (h *handlers) overviewLive(c echo.Context) error {
	d, err := h.overview(c)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "overview_live", d)
}

func (h *handlers) apiOverview(c echo.Context) error {
	d, err := h.overview(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// ---- jobs

type jobsData struct {
	Jobs   []audit.Job      `json:"jobs"`
	Counts map[string]int64 `json:"counts"`
	Status string           `json:"status,omitempty"`
	Name   string           `json:"name,omitempty"`
	Source string           `json:"source,omitempty"`
	// Sources are the ones the filter offers.
	Sources []string `json:"-"`
	// Next is the query of the next (older) page; empty on the last page.
	Next  string `json:"next,omitempty"`
	Paged bool   `json:"-"`
	Query string `json:"-"`
}

func (h *handlers) list(c echo.Context) (jobsData, error) {
	f := audit.Filter{Status: strings.ToUpper(strings.ReplaceAll(c.QueryParam("status"), "-", "_")), Name: c.QueryParam("name"), Source: c.QueryParam("source"), Limit: 50}
	if f.Status != "" && !validStatus(f.Status) {
		return jobsData{}, echo.NewHTTPError(http.StatusBadRequest, "unknown status "+c.QueryParam("status"))
	}
	if len(f.Source) > 63 {
		return jobsData{}, echo.NewHTTPError(http.StatusBadRequest, "source filter longer than 63 characters")
	}
	if len(f.Name) > 256 {
		return jobsData{}, echo.NewHTTPError(http.StatusBadRequest, "name filter longer than 256 characters")
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return jobsData{}, echo.NewHTTPError(http.StatusBadRequest, "limit: want 1..1000")
		}
		f.Limit = n
	}
	if b := c.QueryParam("before"); b != "" {
		at, id, ok := strings.Cut(b, "|")
		ns, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || id == "" {
			return jobsData{}, echo.NewHTTPError(http.StatusBadRequest, "bad page cursor")
		}
		f.BeforeAt, f.BeforeID = time.Unix(0, ns), id
	}
	ctx := c.Request().Context()
	jobs, err := h.o.Store.List(ctx, f)
	if err != nil {
		return jobsData{}, err
	}
	counts, err := h.o.Store.CountByStatus(ctx)
	if err != nil {
		return jobsData{}, err
	}
	q := url.Values{}
	if f.Status != "" {
		q.Set("status", strings.ToLower(f.Status))
	}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	if f.Source != "" {
		q.Set("source", f.Source)
	}
	d := jobsData{Jobs: jobs, Counts: counts, Status: f.Status, Name: f.Name, Source: f.Source, Sources: h.o.Sources, Paged: f.BeforeID != "", Query: q.Encode()}
	if len(jobs) == f.Limit {
		last := jobs[len(jobs)-1]
		q.Set("before", fmt.Sprintf("%d|%s", last.CreatedAt.UnixNano(), last.JobID))
		if f.Limit != 50 {
			q.Set("limit", strconv.Itoa(f.Limit))
		}
		d.Next = q.Encode()
	}
	return d, nil
}

func (h *handlers) jobsPage(c echo.Context) error {
	d, err := h.list(c)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "jobs.html", d)
}

func (h *handlers) jobsRows(c echo.Context) error {
	d, err := h.list(c)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "jobs_rows", d)
}

func (h *handlers) apiJobs(c echo.Context) error {
	d, err := h.list(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

type jobData struct {
	Job         audit.Job        `json:"job"`
	Events      []audit.JobEvent `json:"events"`
	Progress    *Progress        `json:"progress,omitempty"`
	ProgressErr string           `json:"progress_error,omitempty"`
}

func (h *handlers) load(c echo.Context, events bool) (jobData, error) {
	id := c.Param("id")
	ctx := c.Request().Context()
	j, err := h.o.Store.Job(ctx, id)
	if errors.Is(err, audit.ErrNotFound) {
		return jobData{}, echo.NewHTTPError(http.StatusNotFound, "no job "+id)
	}
	if err != nil {
		return jobData{}, err
	}
	d := jobData{Job: j}
	if events {
		if d.Events, err = h.o.Store.Events(ctx, id); err != nil {
			return d, err
		}
	}
	if h.o.Progress != nil && !terminal(j.Status) {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if p, err := h.o.Progress(pctx, j.WorkflowID, j.RunID); err != nil {
			d.ProgressErr = err.Error()
		} else {
			d.Progress = &p
		}
	}
	return d, nil
}

func terminal(status string) bool {
	return status == audit.StatusSucceeded || status == audit.StatusFailed || status == audit.StatusDeadLettered
}

func (h *handlers) jobPage(c echo.Context) error {
	d, err := h.load(c, true)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "job.html", d)
}

func (h *handlers) jobLive(c echo.Context) error {
	d, err := h.load(c, false)
	if err != nil {
		return err
	}
	return c.Render(http.StatusOK, "job_live", d)
}

func (h *handlers) apiJob(c echo.Context) error {
	d, err := h.load(c, true)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (h *handlers) apiProgress(c echo.Context) error {
	d, err := h.load(c, false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"job_id": d.Job.JobID, "status": d.Job.Status, "progress": d.Progress, "progress_error": d.ProgressErr})
}

// ---- submit

func (h *handlers) apiSubmit(c echo.Context) error {
	if h.o.Submit == nil {
		return echo.NewHTTPError(http.StatusNotImplemented, "submitting is not available here")
	}
	body, err := io.ReadAll(c.Request().Body) // bounded by limitBody
	if isTooLarge(err) {
		return tooLarge(maxJobBody)
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "read body: "+err.Error())
	}
	res, err := h.o.Submit(c.Request().Context(), body, actorFrom(c))
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he
		}
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error()).SetInternal(err)
	}
	h.o.Logger.Info("job submitted from the dashboard", "job_id", res.JobID, "workflow_id", res.WorkflowID, "actor", actorFrom(c))
	return c.JSON(http.StatusAccepted, res)
}

// ---- dead-letter queue

type dlqData struct {
	Letters []audit.DeadLetter `json:"dead_letters"`
	State   string             `json:"state,omitempty"`
	Next    string             `json:"next,omitempty"`
	Counts  map[string]int64   `json:"-"`
	CanAct  bool               `json:"-"`
	Replay  bool               `json:"-"`
	Notice  string             `json:"-"`
}

func (h *handlers) dlqList(c echo.Context) (dlqData, error) {
	f := audit.DLQFilter{State: c.QueryParam("state"), Limit: 50}
	switch f.State {
	case "", audit.DLQOpen, audit.DLQReplayed, audit.DLQDiscarded:
	default:
		return dlqData{}, echo.NewHTTPError(http.StatusBadRequest, "state: want open, replayed or discarded")
	}
	if b := c.QueryParam("before"); b != "" {
		parts := strings.Split(b, "|")
		if len(parts) != 3 {
			return dlqData{}, echo.NewHTTPError(http.StatusBadRequest, "bad page cursor")
		}
		ns, err1 := strconv.ParseInt(parts[0], 10, 64)
		p, err2 := strconv.ParseInt(parts[1], 10, 32)
		o, err3 := strconv.ParseInt(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return dlqData{}, echo.NewHTTPError(http.StatusBadRequest, "bad page cursor")
		}
		f.Paged, f.BeforeAt, f.BeforeP, f.BeforeO = true, time.Unix(0, ns), int32(p), o
	}
	ls, err := h.o.Store.DeadLetters(c.Request().Context(), f)
	if err != nil {
		return dlqData{}, err
	}
	d := dlqData{Letters: ls, State: f.State, CanAct: h.o.APIKey != "" || h.o.Store != nil, Replay: h.o.Republish != nil}
	if len(ls) == f.Limit {
		last := ls[len(ls)-1]
		q := url.Values{"before": {fmt.Sprintf("%d|%d|%d", last.PublishedAt.UnixNano(), last.Partition, last.Offset)}}
		if f.State != "" {
			q.Set("state", f.State)
		}
		d.Next = q.Encode()
	}
	return d, nil
}

func (h *handlers) dlqPage(c echo.Context) error {
	d, err := h.dlqList(c)
	if err != nil {
		return err
	}
	d.Notice = c.QueryParam("done")
	return c.Render(http.StatusOK, "dlq.html", d)
}

// reconcileWindow is the window ?since= names: a duration back from now, default 24h, at most 31 days.
func (h *handlers) reconcileWindow(c echo.Context) (time.Duration, error) {
	if h.o.Reconcile == nil {
		return 0, echo.NewHTTPError(http.StatusNotImplemented, "reconciliation is not available: no S3 client")
	}
	s := c.QueryParam("since")
	if s == "" {
		return 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 31*24*time.Hour {
		return 0, echo.NewHTTPError(http.StatusBadRequest, "since: a duration such as 24h, at most 744h")
	}
	return d, nil
}

func (h *handlers) reconcile(c echo.Context) (reconcile.Report, time.Duration, error) {
	window, err := h.reconcileWindow(c)
	if err != nil {
		return reconcile.Report{}, 0, err
	}
	r, err := h.o.Reconcile(c.Request().Context(), h.o.Now().Add(-window))
	if err != nil {
		return r, 0, echo.NewHTTPError(http.StatusBadGateway, "reconcile failed").SetInternal(err)
	}
	return r, window, nil
}

func (h *handlers) apiReconcile(c echo.Context) error {
	r, _, err := h.reconcile(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

// reconcilePage shows the ledger of the window, its totals, and every difference with a link.
func (h *handlers) reconcilePage(c echo.Context) error {
	r, window, err := h.reconcile(c)
	if err != nil {
		return err
	}
	total := reconcile.Line{Topic: "all"}
	for _, l := range r.Ledger {
		total.Consumed += l.Consumed
		total.Archived += l.Archived
		total.DeadLettered += l.DeadLettered
		total.InFlight += l.InFlight
		total.Redelivered += l.Redelivered
		total.Differing += l.Differing
	}
	return c.Render(http.StatusOK, "reconcile.html", map[string]any{"Report": r, "Total": total, "Window": window.String(),
		"Windows": []string{"1h0m0s", "24h0m0s", "168h0m0s", "744h0m0s"}})
}

func (h *handlers) apiDLQ(c echo.Context) error {
	d, err := h.dlqList(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

func (h *handlers) resolve(c echo.Context, action string) (audit.DeadLetter, error) {
	p, err1 := strconv.ParseInt(c.Param("partition"), 10, 32)
	o, err2 := strconv.ParseInt(c.Param("offset"), 10, 64)
	if err1 != nil || err2 != nil {
		return audit.DeadLetter{}, echo.NewHTTPError(http.StatusBadRequest, "bad partition or offset")
	}
	if action == audit.DLQReplayed && h.o.Republish == nil {
		return audit.DeadLetter{}, echo.NewHTTPError(http.StatusNotImplemented, "replay is not available: no Kafka producer")
	}
	actor := actorFrom(c)
	d, err := h.o.Store.ResolveDeadLetter(c.Request().Context(), h.o.DLQTopic, int32(p), o, action, actor, h.o.Republish)
	switch {
	case errors.Is(err, audit.ErrNotFound):
		return d, echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no dead letter at %s/%d/%d", h.o.DLQTopic, p, o))
	case errors.Is(err, audit.ErrDLQState):
		return d, echo.NewHTTPError(http.StatusConflict, fmt.Sprintf("dead letter %s/%d/%d is already %s", h.o.DLQTopic, p, o, d.State))
	case err != nil:
		return d, echo.NewHTTPError(http.StatusBadGateway, err.Error()).SetInternal(err)
	}
	metrics.Jobs.WithLabelValues(action, deref(d.Source)).Inc()
	h.o.Logger.Info("dead letter "+action, "topic", h.o.DLQTopic, "partition", p, "offset", o, "job_id", deref(d.JobID),
		"workflow_id", deref(d.WorkflowID), "actor", actor)
	return d, nil
}

func (h *handlers) dlqActionForm(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		d, err := h.resolve(c, action)
		if err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/dlq?done="+url.QueryEscape(fmt.Sprintf("%s %d/%d", d.State, d.Partition, d.Offset)))
	}
}

func (h *handlers) apiDLQAction(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		d, err := h.resolve(c, action)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, d)
	}
}

// ---- readiness

// readyz names the failing dependencies to anyone (probes carry no key) and says why only to a
// caller with the key or a session: the errors name hosts, addresses and versions.
func (h *handlers) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	failing, errs := []string{}, map[string]string{}
	for name, check := range h.o.Ready {
		if err := check(ctx); err != nil {
			failing, errs[name] = append(failing, name), err.Error()
		}
	}
	if len(failing) == 0 {
		return c.JSON(http.StatusOK, map[string]any{"ready": true, "failing": failing})
	}
	sort.Strings(failing)
	h.o.Logger.Warn("not ready", "failing", failing, "errors", errs)
	body := map[string]any{"ready": false, "failing": failing}
	if authedFrom(c) {
		body["errors"] = errs
	}
	return c.JSON(http.StatusServiceUnavailable, body)
}

func validStatus(s string) bool {
	for _, v := range audit.Statuses {
		if v == s {
			return true
		}
	}
	return false
}
