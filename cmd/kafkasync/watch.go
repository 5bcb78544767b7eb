package main

import (
	"context"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/watcher"
)

func (a *app) watchCmd() *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "List the sources' watched SFTP directories and announce each new file as a job",
		Long: `watch lists the directories of the watch entries ([[sftp.watch]] for the default source,
[[sources.<name>.watch]] for the others), each every interval, and announces every file whose
name matches the entry's pattern as a job message on the entry's topic, keyed by its job id:

  {"id": "w-<24 hex digits>", "remote_path": "/outbox/a.csv", "size": 1234, "source": "partner-a"}

("source" is left out for the default source). The bridge starts one workflow per job.

min_age: a file is announced only once its size and mtime have stayed the same for min_age
(default 30s), so a file still being written is not. The first listing that sees a file as it is
starts the clock; the first listing min_age later announces it. A file that changes after it was
announced is announced again, as a new job. The job id is a hash of source, path, size and
mtime: the same file announced twice (a crash between Kafka's acknowledgement and the update
below) is still one job, one workflow.

State: table watch_files in postgres.dsn (its migration is applied at start), one row per
(source, path): size, mtime, first_seen, stable_since, announced_at, job_id. announced_at is
written only after Kafka acknowledged the message, so a restart, or another watcher, announces
nothing twice as a different job.

Replicas: run as many as you like. A replica lists a source only while it holds that source's
PostgreSQL advisory lock, on a connection of its own for the round; a replica that finds it
taken skips the source that round, and one that dies frees its locks with its connection.

With recursive = true the directories below are listed too (links to directories are not
followed). Entries that cannot be read, are not regular files, or name a path no job may have
(allowed_paths, the job rules) are skipped and logged with source, path and reason.

Metrics on metrics.watch_listen (default 127.0.0.1:9466, with /healthz and /readyz):
kafkasync_watch_announced_total, kafkasync_watch_listed_files, kafkasync_watch_skipped_total,
kafkasync_watch_rounds_total{outcome=ok|error|locked}, kafkasync_watch_listing_duration_seconds.

Example:

  [[sources.partner-a.watch]]
  dir = "/outbox"
  pattern = "*.csv"        # path.Match on the file name; empty: every file
  recursive = false
  min_age = "1m"           # unchanged this long before it is announced
  interval = "30s"         # how often the directory is listed
  topic = "kafkasync.jobs" # default kafka.jobs_topic

With --once, every entry is listed one time and what is due is announced, then the command
exits. Run from cron, a file is announced by the first run at least min_age after the run that
first saw it unchanged. See docs/WATCHER.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runWatch(cmd.Context(), a.cfg, once) },
	}
	cmd.Flags().BoolVar(&once, "once", false, "list every watch entry one time, announce what is due, and exit")
	return cmd
}

func (a *app) runWatch(ctx context.Context, cfg config.Config, once bool) error {
	store, err := audit.OpenMigrated(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return err
	}
	defer store.Close()
	prod, err := kafkaconn.NewProducer(cfg.Kafka, 0)
	if err != nil {
		return err
	}
	defer prod.Close()
	w, err := watcher.New(watcher.Options{Config: cfg, DB: store.Pool(), DSN: cfg.Postgres.DSN.Reveal(), Producer: prod, Log: a.log})
	if err != nil {
		return err
	}
	if once {
		return w.Once(ctx)
	}
	a.log.Info("watcher started", "sources", w.Sources(), "brokers", cfg.Kafka.Brokers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return metrics.Serve(gctx, cfg.Metrics.WatchListen, a.log, map[string]metrics.Check{"postgres": store.Ping})
	})
	g.Go(func() error { w.Run(gctx); return nil })
	return g.Wait()
}
