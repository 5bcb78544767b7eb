// Package workers runs kafkasync's Temporal workers: one on the shared task queue (the workflow and
// the steps any host can run) and one on this host's own queue (the steps that need the staging
// file). It builds the activities' clients from the config.
package workers

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/kafkasync/kafkasync/activities"
	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/hostlimit"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
	"github.com/kafkasync/kafkasync/internal/startreport"
	"github.com/kafkasync/kafkasync/workflows"
)

// HostQueue is the task queue of one worker host.
func HostQueue(taskQueue, hostID string) string { return taskQueue + "@" + hostID }

// Dial connects to Temporal with the SDK logging through logger.
func Dial(ctx context.Context, c config.Temporal, logger *slog.Logger) (client.Client, error) {
	opts := client.Options{
		HostPort: c.Address, Namespace: c.Namespace, Logger: sdklog.NewStructuredLogger(logger),
		MetricsHandler: metrics.Temporal(logger),
	}
	if c.Compression == "none" {
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	}
	// The bridge learns from it whether a start made a new run or found one running.
	opts.ConnectionOptions.DialOptions = append(opts.ConnectionOptions.DialOptions, startreport.Interceptor())
	if c.TLS.Enable {
		tc, err := c.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("temporal.tls: %w", err)
		}
		opts.ConnectionOptions.TLS = tc
	}
	if c.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(c.APIKey.Reveal())
		if opts.ConnectionOptions.TLS == nil {
			opts.ConnectionOptions.TLS = &tls.Config{MinVersion: tls.VersionTLS12} // an API key never travels in clear
		}
	}
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("temporal %s: %w", c.Address, err)
	}
	return cl, nil
}

// NewTransfer builds the activities' clients. close releases them.
func NewTransfer(ctx context.Context, cfg config.Config, logger *slog.Logger) (t *activities.Transfer, close func(), err error) {
	var closers []func()
	close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			close()
		}
	}()
	store, err := audit.OpenMigrated(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return nil, close, err
	}
	closers = append(closers, store.Close)
	prod, err := kafkaconn.NewProducer(cfg.Kafka, cfg.Kafka.Linger.D())
	if err != nil {
		return nil, close, err
	}
	closers = append(closers, func() { prod.Close() })
	staging, err := openRoot(cfg.Transfer.StagingDir)
	if err != nil {
		return nil, close, err
	}
	closers = append(closers, func() { staging.Close() })
	completed, err := openRoot(cfg.Transfer.CompletedDir)
	if err != nil {
		return nil, close, err
	}
	closers = append(closers, func() { completed.Close() })
	s3c, err := s3client.New(cfg.S3)
	if err != nil {
		return nil, close, err
	}
	t = &activities.Transfer{
		Sources:       map[string]*activities.Source{},
		S3:            s3c,
		Bucket:        cfg.S3.Bucket,
		PartSize:      int64(cfg.S3.PartSize),
		Concurrency:   cfg.S3.Concurrency,
		Audit:         store,
		Producer:      prod,
		DoneTopic:     cfg.Kafka.DoneTopic,
		DLQTopic:      cfg.Kafka.DLQTopic,
		Staging:       staging,
		Completed:     completed,
		HostID:        cfg.Transfer.HostID,
		HostQueue:     HostQueue(cfg.Temporal.TaskQueue, cfg.Transfer.HostID),
		Connections:   cfg.Transfer.Connections,
		Heartbeat:     ProgressEvery,
		StallTimeout:  cfg.Transfer.StallTimeout.D(),
		MaxFileSize:   int64(cfg.Transfer.MaxFileSize),
		KeepCompleted: cfg.Transfer.KeepCompleted.D(),
		SmallMemory:   int64(cfg.Transfer.SmallMemory),
		Logger:        logger,
	}
	for _, name := range cfg.SourceNames() {
		sc, _ := cfg.Source(name)
		src, closeSrc, err := newSource(cfg, name, sc, t, logger)
		if err != nil {
			return nil, close, fmt.Errorf("source %s: %w", name, err)
		}
		closers = append(closers, closeSrc)
		t.Sources[name] = src
	}
	return t, close, nil
}

// newSource builds what the activities need of one SFTP source.
func newSource(cfg config.Config, name string, sc config.Source, t *activities.Transfer, logger *slog.Logger) (*activities.Source, func(), error) {
	dialer, err := sftpdial.New(sc)
	if err != nil {
		return nil, nil, err
	}
	src := &activities.Source{Name: name, SFTP: dialer, Rate: activities.NewRate(int64(sc.Bandwidth)),
		Limits: hostlimit.New(cfg.Postgres.DSN.Reveal(), "source:"+name,
			hostlimit.Limits{Connections: sc.MaxConnections, Jobs: sc.MaxJobs}, logger.With("source", name))}
	if n := sc.SharedConnections; n > 0 {
		// Up to 16 operations share a connection before another is opened; one unused for 15 s closes.
		src.Shared = sftpdial.NewPool(dialer, n, 16, 15*time.Second, activities.PoolSlots(t, src))
	}
	return src, func() {
		// The pool first, so its slots go back while the limiter is up.
		if src.Shared != nil {
			src.Shared.Close()
		}
		src.Limits.Close()
	}, nil
}

// ProgressEvery is how often a running transfer reports its progress to Temporal.
const ProgressEvery = time.Second

// sweepEvery is how often the sweeper looks for files kept long enough.
func sweepEvery(keep time.Duration) time.Duration {
	return min(max(keep/4, time.Second), 10*time.Minute)
}

func openRoot(dir string) (*os.Root, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenRoot(dir)
}

// Options are the worker settings of both of a worker's task queues.
func Options(stopTimeout time.Duration) worker.Options {
	// More pollers than the SDK's 2: with many short jobs, tasks wait for a poller otherwise.
	// Heartbeats reach the server every ProgressEvery, not at the SDK's default of 0.8 × the
	// heartbeat timeout: they carry the progress the dashboard shows.
	return worker.Options{WorkerStopTimeout: stopTimeout, MaxConcurrentWorkflowTaskPollers: 8, MaxConcurrentActivityTaskPollers: 8,
		MaxHeartbeatThrottleInterval: ProgressEvery, DefaultHeartbeatThrottleInterval: ProgressEvery}
}

// Run runs both workers until ctx ends, then stops them gracefully (running activities get
// stopTimeout to finish; a download that does not finish resumes from its heartbeat).
func Run(ctx context.Context, c client.Client, taskQueue string, t *activities.Transfer, stopTimeout time.Duration) error {
	opts := Options(stopTimeout)
	if t.Audit != nil {
		opts.Interceptors = []interceptor.WorkerInterceptor{&attemptRecorder{store: t.Audit, log: cmp.Or(t.Logger, slog.Default())}}
	}
	shared := worker.New(c, taskQueue, opts)
	shared.RegisterWorkflowWithOptions(workflows.FileTransfer, workflow.RegisterOptions{Name: workflows.Name})
	shared.RegisterActivity(t)
	host := worker.New(c, t.HostQueue, opts)
	host.RegisterActivity(t)
	if t.Completed != nil {
		go activities.RunSweeper(ctx, t, sweepEvery(t.KeepCompleted))
	}
	if err := shared.Start(); err != nil {
		return fmt.Errorf("worker %s: %w", taskQueue, err)
	}
	if err := host.Start(); err != nil {
		shared.Stop()
		return fmt.Errorf("worker %s: %w", t.HostQueue, err)
	}
	<-ctx.Done()
	host.Stop()
	shared.Stop()
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}
