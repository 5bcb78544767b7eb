// Package metrics holds kafkasync's Prometheus metrics. One registry per process: the worker, the
// bridge and the watcher serve it on their metrics port, the dashboard at /metrics, `kafkasync dev`
// (worker, bridge and dashboard in one process) on the dashboard.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kafkasync/kafkasync/internal/httpserver"
)

// Registry holds every kafkasync metric, the Go runtime's and the process's.
var Registry = prometheus.NewRegistry()

var (
	// Jobs counts job outcomes: started (a new workflow), duplicate (a redelivered message found its
	// workflow), refused (an invalid message dead-lettered by the bridge), succeeded, failed,
	// dead_lettered, replayed, discarded; by source ("" where the message named none that could be read).
	Jobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkasync_jobs_total", Help: "Jobs by event (started, duplicate, refused, succeeded, failed, dead_lettered, replayed, discarded) and SFTP source.",
	}, []string{"event", "source"})
	// SourceBytes counts the bytes read from each SFTP source.
	SourceBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkasync_source_bytes_total", Help: "Bytes read from each SFTP source.",
	}, []string{"source"})
	// Bytes counts bytes moved by each step: download (fetched from SFTP), verify (hashed), upload (sent to S3).
	Bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkasync_bytes_total", Help: "Bytes moved by step: download (fetched from SFTP), verify (hashed), upload (sent to S3).",
	}, []string{"step"})
	// StepSeconds is the duration of each step attempt, by outcome (ok or error).
	StepSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kafkasync_step_duration_seconds", Help: "Duration of one attempt of a step, by step and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.005, 3, 12), // 5 ms .. ~15 min
	}, []string{"step", "outcome"})
	// SFTPConnections is the number of SFTP connections open for downloads.
	SFTPConnections = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kafkasync_sftp_connections_in_use", Help: "SFTP connections open for downloads on this worker.",
	})
	// ActiveDownloads is the number of Download activities running on this worker.
	ActiveDownloads = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kafkasync_downloads_in_progress", Help: "Download activities running on this worker.",
	})
	// HostSlotWait is how long transfers waited for a slot of the SFTP server's limits.
	HostSlotWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kafkasync_sftp_slot_wait_seconds", Help: "Time a transfer waited for a slot of an SFTP source's limits (max_connections, max_jobs), by kind (conn or job) and source.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms .. ~4 min
	}, []string{"kind", "source"})
	// ReconcileDifferences is what the dashboard's last periodic reconciliation of the last day found.
	ReconcileDifferences = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kafkasync_reconcile_differences", Help: "Differences the dashboard's last reconciliation of the last day found between the messages consumed, the audit trail and the bucket (every ui.reconcile_every).",
	})
	// BridgeLag is, per partition of the jobs topic, the messages after the one the bridge just handled.
	BridgeLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kafkasync_bridge_consumer_lag", Help: "Messages on the jobs topic after the last one this bridge handled, per partition.",
	}, []string{"topic", "partition"})
	// WatchAnnounced counts the files `kafkasync watch` announced, once Kafka acknowledged them.
	WatchAnnounced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkasync_watch_announced_total", Help: "Files the watcher announced as jobs (acknowledged by Kafka), per source.",
	}, []string{"source"})
	// WatchListed is how many files matched the watch entries of a source at its last listing.
	WatchListed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kafkasync_watch_listed_files", Help: "Files matching a source's watch entries at its last complete listing by this watcher.",
	}, []string{"source"})
	// WatchSkipped counts entries the watcher could not consider: unreadable, not a regular file,
	// or a path no job may name.
	WatchSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkasync_watch_skipped_total", Help: "Directory entries the watcher skipped (unreadable, not a regular file, refused as a job), per source.",
	}, []string{"source"})
	// WatchRounds counts listing rounds by outcome: ok, error, or locked (another replica held the
	// source's lock).
	WatchRounds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkasync_watch_rounds_total", Help: "Listing rounds per source, by outcome: ok, error, locked (another watcher held the source).",
	}, []string{"source", "outcome"})
	// WatchListSeconds is how long a listing round of a source took, announcements included.
	WatchListSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kafkasync_watch_listing_duration_seconds", Help: "Duration of one listing round of a source, announcements included.",
		Buckets: prometheus.ExponentialBuckets(0.01, 3, 10), // 10 ms .. ~3 min
	}, []string{"source"})
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		Jobs, SourceBytes, ReconcileDifferences, Bytes, StepSeconds, SFTPConnections, ActiveDownloads, HostSlotWait, BridgeLag,
		WatchAnnounced, WatchListed, WatchSkipped, WatchRounds, WatchListSeconds)
	for _, e := range []string{"started", "duplicate", "refused", "succeeded", "failed", "dead_lettered", "replayed", "discarded"} {
		Jobs.WithLabelValues(e, "default")
	}
	for _, s := range []string{"download", "verify", "upload"} {
		Bytes.WithLabelValues(s)
	}
}

// Handler serves the registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry, ErrorLog: nil})
}

// Observe records one step attempt that began at start.
func Observe(step string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	StepSeconds.WithLabelValues(step, outcome).Observe(time.Since(start).Seconds())
}

// Check is a named readiness check.
type Check func(ctx context.Context) error

// Serve serves /metrics, /healthz (the process is up) and /readyz (every check passes) on addr until
// ctx ends. An empty addr serves nothing.
func Serve(ctx context.Context, addr string, log *slog.Logger, ready map[string]Check) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		cctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		res, ok := map[string]string{}, true
		for name, check := range ready {
			if err := check(cctx); err != nil {
				res[name], ok = err.Error(), false
			} else {
				res[name] = "ok"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": res})
	})
	srv := httpserver.New("", mux)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
