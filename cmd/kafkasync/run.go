package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/IBM/sarama"
	"github.com/labstack/echo/v4"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/archive"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/httpserver"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/kafkaops"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/ui"
	"github.com/kafkasync/kafkasync/workers"
)

func (a *app) workerCmd() *cobra.Command {
	var withBridge bool
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a Temporal worker: the workflow, and this host's downloads, checks and uploads",
		Long: `worker polls the shared task queue (temporal.task_queue) for workflows and host-independent
steps, and its own host queue (<task_queue>@<transfer.host_id>) for the steps that need the staging
file. Give each host a stable host_id: a worker that restarts with the same id resumes its
interrupted downloads from their last heartbeat.

With --bridge the process also runs the bridge, on the same Temporal connection: each start is
then eager, the server hands the job's first workflow task straight back to this worker instead
of queueing it, which saves a round trip per job (what many small files need).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := workers.Dial(cmd.Context(), a.cfg.Temporal, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			if !withBridge {
				return a.serveWorker(cmd.Context(), a.cfg, c)
			}
			g, gctx := errgroup.WithContext(cmd.Context())
			g.Go(func() error { return a.serveWorker(gctx, a.cfg, c) })
			g.Go(func() error { return a.serveBridge(gctx, a.cfg, c) })
			return g.Wait()
		},
	}
	cmd.Flags().BoolVar(&withBridge, "bridge", false, "also run the bridge in this process (eager starts)")
	return cmd
}

// serveWorker runs a worker on c until ctx ends.
func (a *app) serveWorker(ctx context.Context, cfg config.Config, c client.Client) error {
	t, closeT, err := workers.NewTransfer(ctx, cfg, a.log)
	if err != nil {
		return err
	}
	defer closeT()
	a.log.Info("worker started", "task_queue", cfg.Temporal.TaskQueue, "host_queue", t.HostQueue,
		"staging", cfg.Transfer.StagingDir, "completed", cfg.Transfer.CompletedDir)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return metrics.Serve(gctx, cfg.Metrics.WorkerListen, a.log, map[string]metrics.Check{
			"temporal": temporalReady(c),
			"postgres": t.Audit.Ping,
		})
	})
	g.Go(func() error { return workers.Run(gctx, c, cfg.Temporal.TaskQueue, t, 10*time.Second) })
	return g.Wait()
}

func (a *app) bridgeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bridge",
		Short: "Consume job messages from Kafka and start one workflow per job",
		Long: `bridge joins the consumer group kafka.group on kafka.jobs_topic. Each valid job starts workflow
file-<job id> (a redelivered message finds the existing one); each invalid message goes to
kafka.dlq_topic with the reason in its headers, and into the audit table dead_letters. A start
Temporal refuses for good (an invalid request) is dead-lettered at stage start. Up to
kafka.starts_in_flight messages of a partition are started at once; offsets are committed in
order, each only after its message and every one before it were started or dead-lettered.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := workers.Dial(cmd.Context(), a.cfg.Temporal, a.log)
			if err != nil {
				return err
			}
			defer c.Close()
			return a.serveBridge(cmd.Context(), a.cfg, c)
		},
	}
}

// serveBridge runs the bridge, starting workflows through c, until ctx ends.
func (a *app) serveBridge(ctx context.Context, cfg config.Config, c client.Client) error {
	prod, err := kafkaconn.NewProducer(cfg.Kafka, 0)
	if err != nil {
		return err
	}
	defer prod.Close()
	store, err := audit.OpenMigrated(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return err
	}
	defer store.Close()
	b := starter.New(cfg, c, prod, a.log)
	b.Audit = store // refused messages reach the audit trail without the dashboard
	a.log.Info("bridge started", "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.JobsTopic, "group", cfg.Kafka.Group,
		"starts_in_flight", b.InFlight)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return metrics.Serve(gctx, cfg.Metrics.BridgeListen, a.log, map[string]metrics.Check{
			"temporal": temporalReady(c),
			"postgres": store.Ping,
		})
	})
	g.Go(func() error {
		return starter.RunConfig(gctx, cfg, b)
	})
	return g.Wait()
}

func (a *app) uiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ui",
		Short: "Serve the dashboard: jobs, their steps, the archive's objects, links to the Temporal Web UI",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return a.runUI(cmd.Context(), a.cfg) },
	}
}

func (a *app) runUI(ctx context.Context, cfg config.Config) error {
	store, err := audit.OpenMigrated(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return err
	}
	defer store.Close()
	kcfg := cfg.Kafka
	kcfg.ClientID += "-ui"
	kc, err := kafkaops.DialConfig(kcfg)
	if err != nil {
		return err
	}
	defer kc.Close()
	tc, err := workers.Dial(ctx, cfg.Temporal, a.log)
	if err != nil {
		return err
	}
	defer tc.Close()
	s3c, err := s3client.New(cfg.S3)
	if err != nil {
		return err
	}
	ro := reconcile.ForConfig(cfg, store, s3c, kc, tc)
	check := func(ctx context.Context, since time.Time) (reconcile.Report, error) {
		return reconcile.Check(ctx, ro, since)
	}
	e := ui.New(ui.Options{
		Store: store, TemporalUI: cfg.Temporal.UIURL, Namespace: cfg.Temporal.Namespace, Logger: a.log,
		APIKey: cfg.UI.APIKey.Reveal(), PublicRead: cfg.UI.PublicRead, RateLimit: cfg.UI.RateLimit,
		DLQTopic: cfg.Kafka.DLQTopic, Republish: kc.Republish(cfg.Kafka.JobsTopic), Sources: cfg.SourceNames(),
		Submit: func(_ context.Context, msg []byte, actor string) (ui.SubmitResult, error) {
			j, err := cfg.JobPolicy().Parse(nil, msg)
			if err != nil {
				return ui.SubmitResult{}, echo.NewHTTPError(http.StatusBadRequest, err.Error())
			}
			p, o, err := kc.Send(cfg.Kafka.JobsTopic, []byte(j.ID), msg, sarama.RecordHeader{Key: []byte(job.HeaderSubmittedBy), Value: []byte(actor)})
			return ui.SubmitResult{JobID: j.ID, WorkflowID: j.WorkflowID(), Partition: p, Offset: o}, err
		},
		Progress: ui.TemporalProgress(tc),
		Lag:      func() (kafkaops.Lag, error) { return kc.ConsumerLag(cfg.Kafka.JobsTopic, cfg.Kafka.Group) },
		Ready: map[string]func(context.Context) error{
			"postgres": func(ctx context.Context) error { return store.Pool().Ping(ctx) },
			"kafka":    kc.Ping,
			"temporal": temporalReady(tc),
		},
		Metrics:   metrics.Handler(),
		Reconcile: check,
		Archive:   &ui.ArchiveOptions{S3: s3c, Buckets: archive.Buckets(cfg), Presign: cfg.UI.Presign},
	})
	idx := &kafkaops.Indexer{Kafka: kc, Store: store, Topic: cfg.Kafka.DLQTopic, Logger: a.log}
	srv := httpserver.New(cfg.UI.Listen, e)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { idx.Run(gctx, 2*time.Second); return nil })
	g.Go(func() error { a.reconcileEvery(gctx, cfg.UI.ReconcileEvery.D(), check); return nil })
	g.Go(func() error {
		a.log.Info("dashboard listening", "url", cfg.UI.PublicURL, "public_read", cfg.UI.PublicRead)
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("dashboard %s: %w", cfg.UI.Listen, err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

func (a *app) migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the audit schema's migrations to postgres.dsn (also done at every start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := audit.Open(cmd.Context(), a.cfg.Postgres.DSN.Reveal())
			if err != nil {
				return err
			}
			defer store.Close()
			applied, err := store.Migrate(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %d migrations %v\n", len(applied), applied)
			return nil
		},
	}
}

// reconcileEvery reconciles the last day every interval (0: never), sets the
// kafkasync_reconcile_differences gauge to what it found, and logs what differs. Only this loop
// sets the gauge: a report asked for on the dashboard, of any window, leaves it alone.
func (a *app) reconcileEvery(ctx context.Context, interval time.Duration, check func(context.Context, time.Time) (reconcile.Report, error)) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := check(ctx, time.Now().Add(-24*time.Hour))
		if err == nil {
			metrics.ReconcileDifferences.Set(float64(len(r.Differences)))
		}
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Error("reconcile", "err", err)
		case len(r.Differences) > 0:
			a.log.Warn("reconcile: the archive differs from the audit trail", "checked", r.Checked, "differences", len(r.Differences),
				"first_job_id", r.Differences[0].JobID, "first_kind", r.Differences[0].Kind)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// temporalReady is the readiness check of a Temporal client: the frontend answers a health check.
func temporalReady(c client.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}
}
