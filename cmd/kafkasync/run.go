package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/ui"
	"github.com/kafkasync/kafkasync/workers"
)

func (a *app) workerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run a Temporal worker: the workflow, and this host's downloads, checks and uploads",
		Long: `worker polls the shared task queue (temporal.task_queue) for workflows and host-independent
steps, and its own host queue (<task_queue>@<transfer.host_id>) for the steps that need the staging
file. Give each host a stable host_id: a worker that restarts with the same id resumes its
interrupted downloads from their last heartbeat.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runWorker(cmd.Context(), a.cfg) },
	}
}

func (a *app) runWorker(ctx context.Context, cfg config.Config) error {
	c, err := workers.Dial(ctx, cfg.Temporal, a.log)
	if err != nil {
		return err
	}
	defer c.Close()
	t, closeT, err := workers.NewTransfer(ctx, cfg, a.log)
	if err != nil {
		return err
	}
	defer closeT()
	a.log.Info("worker started", "task_queue", cfg.Temporal.TaskQueue, "host_queue", t.HostQueue,
		"staging", cfg.Transfer.StagingDir, "completed", cfg.Transfer.CompletedDir)
	return workers.Run(ctx, c, cfg.Temporal.TaskQueue, t, 10*time.Second)
}

func (a *app) bridgeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bridge",
		Short: "Consume job messages from Kafka and start one workflow per job",
		Long: `bridge joins the consumer group kafka.group on kafka.jobs_topic. Each valid job starts workflow
file-<job id> (a redelivered message finds the existing one); each invalid message goes to
kafka.dlq_topic with the reason in its headers. Offsets are committed only after that.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runBridge(cmd.Context(), a.cfg) },
	}
}

func (a *app) runBridge(ctx context.Context, cfg config.Config) error {
	c, err := workers.Dial(ctx, cfg.Temporal, a.log)
	if err != nil {
		return err
	}
	defer c.Close()
	prod, err := workers.NewProducer(cfg.Kafka)
	if err != nil {
		return err
	}
	defer prod.Close()
	b := &starter.Bridge{Temporal: c, TaskQueue: cfg.Temporal.TaskQueue, Options: starter.WorkflowOptions(cfg),
		DLQ: prod, DLQTopic: cfg.Kafka.DLQTopic, Logger: a.log, Backoff: 30 * time.Second}
	a.log.Info("bridge started", "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.JobsTopic, "group", cfg.Kafka.Group)
	return starter.Run(ctx, cfg.Kafka.Brokers, cfg.Kafka.Group, cfg.Kafka.JobsTopic, starter.ConsumerConfig(cfg.Kafka.ClientID), b)
}

func (a *app) uiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ui",
		Short: "Serve the dashboard: jobs, their steps, links to the Temporal Web UI",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return a.runUI(cmd.Context(), a.cfg) },
	}
}

func (a *app) runUI(ctx context.Context, cfg config.Config) error {
	store, err := audit.Open(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		return err
	}
	e := ui.New(ui.Options{Store: store, TemporalUI: cfg.Temporal.UIURL, Namespace: cfg.Temporal.Namespace,
		Logger: a.log, Ping: func(ctx context.Context) error { return store.Pool().Ping(ctx) }})
	srv := &http.Server{Addr: cfg.UI.Listen, Handler: e, ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		a.log.Info("dashboard listening", "url", cfg.UI.PublicURL)
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
