package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/samplefile"
	"github.com/kafkasync/kafkasync/starter"
	"github.com/kafkasync/kafkasync/workers"
	"github.com/kafkasync/kafkasync/workflows"
)

func (a *app) devCmd() *cobra.Command {
	var demo bool
	var kafka, temporal string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline on this machine: every server on loopback, plus worker, bridge and dashboard",
		Long: `dev starts real servers on loopback, each on the port in the [dev] config section:
  Apache Kafka, one KRaft node (Java, from bin/kafka)  :9092
  Temporal server on PostgreSQL, Temporal Web UI      :7233, :8233
  SFTP server (pkg/sftp, in process)                   :2222
  S3-API server (versitygw)                            :9000
  PostgreSQL (initdb + postgres)                       :5433
  dashboard                                            :8080
then runs a worker, the bridge and the dashboard against them. Data lives in dev.dir
(.kafkasync/), so a restart keeps the jobs. When everything is up it writes .kafkasync/dev.env
with one NAME=value line per endpoint. Ctrl-C stops everything it started.

The Temporal server (built into bin/ by make tools) keeps its state in databases temporal and
temporal_visibility of the same PostgreSQL, with 4 history shards; dev sets up their schema with
the server's own SQL tool, and registers namespace default and kafkasync's search attributes.
With --temporal=dev the Temporal CLI's dev server runs instead, its state in one SQLite file.

With --kafka=embedded an in-process Kafka-protocol broker (franz-go's kfake) stands in for Apache
Kafka: it starts at once and needs no Java. Each broker keeps its own data folder.

With --demo it also drops sample files on the SFTP server and submits a job for each.`,
		Example: `  kafkasync dev --demo
  kafkasync dev --kafka=embedded
  kafkasync dev --temporal=dev`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("kafka") {
				a.cfg.Dev.Kafka = kafka
			}
			if cmd.Flags().Changed("temporal") {
				a.cfg.Dev.Temporal = temporal
			}
			if err := a.cfg.Validate(); err != nil {
				return err
			}
			return a.runDev(cmd.Context(), cmd.OutOrStdout(), demo)
		},
	}
	cmd.Flags().BoolVar(&demo, "demo", false, "drop sample files on the SFTP server and submit jobs for them")
	cmd.Flags().StringVar(&kafka, "kafka", devstack.KafkaApache, "broker to run: apache or embedded (dev.kafka in the config)")
	cmd.Flags().StringVar(&temporal, "temporal", devstack.TemporalServer, "Temporal to run: server (on PostgreSQL) or dev (dev.temporal in the config)")
	return cmd
}

func (a *app) runDev(ctx context.Context, out io.Writer, demo bool) error {
	cfg := a.cfg
	dir := cfg.Dev.Dir
	logFile, err := openLog(filepath.Join(dir, "servers.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(out, "starting servers (their logs: %s) ...\n", logFile.Name())
	st, err := devstack.Start(ctx, devstack.Options{
		Dir: dir, BinDir: cfg.Dev.BinDir, Ports: cfg.Dev, Kafka: cfg.Dev.Kafka, Temporal: cfg.Dev.Temporal, Topics: []string{cfg.Kafka.JobsTopic, cfg.Kafka.DLQTopic, cfg.Kafka.DoneTopic},
		Bucket: cfg.S3.Bucket, S3AccessKey: cfg.S3.AccessKey, S3SecretKey: cfg.S3.SecretKey.Reveal(),
		Log: logFile, Logger: a.log,
	})
	if err != nil {
		return err
	}
	defer st.Stop()
	st.Apply(&cfg)
	cfg.UI.Listen = "127.0.0.1:" + strconv.Itoa(cfg.Dev.UIPort)
	cfg.UI.PublicURL = "http://" + cfg.UI.Listen
	cfg.Transfer.StagingDir = filepath.Join(dir, "data", "staging")
	cfg.Transfer.CompletedDir = filepath.Join(dir, "data", "completed")
	// One process: the dashboard serves every component's metrics at /metrics.
	cfg.Metrics.WorkerListen, cfg.Metrics.BridgeListen, cfg.Metrics.WatchListen = "", "", ""
	inbox, err := watchInbox(&cfg, st.SFTP.Root)
	if err != nil {
		return err
	}
	cfg.UI.PublicRead = true
	if cfg.UI.APIKey == "" {
		key, err := devAPIKey(filepath.Join(dir, "dashboard.key"))
		if err != nil {
			return err
		}
		cfg.UI.APIKey = config.Secret(key)
	}
	adminPassword, err := devAdmin(ctx, cfg, filepath.Join(dir, "dashboard.admin"))
	if err != nil {
		return err
	}
	envFile := filepath.Join(dir, "dev.env")
	if err := st.WriteEnv(envFile, cfg); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The worker and the bridge share one Temporal connection, so that starts are eager.
	c, err := workers.Dial(ctx, cfg.Temporal, a.log)
	if err != nil {
		return err
	}
	defer c.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.serveWorker(gctx, cfg, c) })
	g.Go(func() error { return a.serveBridge(gctx, cfg, c) })
	g.Go(func() error { return a.runUI(gctx, cfg) })
	g.Go(func() error { return a.runWatch(gctx, cfg, false) })

	fmt.Fprintf(out, `
kafkasync dev is up. Where to look:
  Kafka             %s
  Temporal          %s
  dashboard         %s  (log in as admin, password %s; or the API key DASHBOARD_API_KEY in the endpoints file)
  metrics           %s/metrics
  Temporal Web UI   %s
  S3 bucket         s3://%s at %s (objects as files under %s)
  archive           %s/archive; or KAFKASYNC_API_KEY=<DASHBOARD_API_KEY> kafkasync archive ls --url %s
  audit table       psql '%s' -c 'SELECT job_id, status, size_bytes, bytes_per_sec FROM jobs'
  SFTP server       sftp -P %d -i %s -o UserKnownHostsFile=%s %s@127.0.0.1  (serves %s)
  drop a file       copy it into %s: it is archived with no command (watched every 2 s,
                    announced once unchanged for 2 s)
  submit a job      put a file under %s, then: kafkasync submit --remote-path /<file> --md5-from <file>
  endpoints         %s
Ctrl-C stops everything.
`, kafkaBanner(st.Kafka), temporalBanner(st.Temporal, st.Postgres), cfg.UI.PublicURL, adminPassword, cfg.UI.PublicURL, st.Temporal.UIURL, cfg.S3.Bucket, st.S3.Endpoint, filepath.Join(st.S3.Dir, cfg.S3.Bucket),
		cfg.UI.PublicURL, cfg.UI.PublicURL, st.Postgres.DSN, portOf(st.SFTP.Addr), st.SFTP.KeyFile, st.SFTP.KnownHosts, st.SFTP.User, st.SFTP.Root,
		inbox, st.SFTP.Root, envFile)

	if demo {
		g.Go(func() error { return a.runDemo(gctx, out, cfg, st) })
	}
	err = g.Wait()
	fmt.Fprintln(out, "stopping ...")
	return err
}

// watchInbox makes the dev SFTP server's /inbox a watched directory of the default source (unless
// the config watches something already) and returns where it is on disk.
func watchInbox(cfg *config.Config, root string) (string, error) {
	inbox := filepath.Join(root, "inbox")
	if len(cfg.SFTP.Watch) == 0 {
		cfg.SFTP.Watch = []config.Watch{{Dir: "/inbox", MinAge: config.Duration(2 * time.Second),
			Interval: config.Duration(2 * time.Second), Topic: cfg.Kafka.JobsTopic}}
	}
	return inbox + "/", os.MkdirAll(inbox, 0o755)
}

// devAdmin makes the dashboard's first account, admin, with a random password kept in file (mode
// 0600), and returns the password; on later starts it reads it back.
func devAdmin(ctx context.Context, cfg config.Config, file string) (string, error) {
	store, err := audit.OpenMigrated(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return "", err
	}
	defer store.Close()
	if _, err := store.Account(ctx, "admin"); err == nil {
		b, err := os.ReadFile(file)
		if err != nil {
			return "(set before; see kafkasync user)", nil
		}
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 12)
	rand.Read(b)
	pw := hex.EncodeToString(b)
	if _, err := store.AddAccount(ctx, "admin", audit.RoleAdmin, pw, "kafkasync-dev"); err != nil {
		return "", err
	}
	return pw, os.WriteFile(file, []byte(pw+"\n"), 0o600)
}

// devAPIKey reads the dev dashboard's API key, creating it (random, mode 0600) on first use.
func devAPIKey(file string) (string, error) {
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := hex.EncodeToString(b)
	return key, os.WriteFile(file, []byte(key+"\n"), 0o600)
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func openLog(file string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// runDemo writes sample files into the SFTP root, submits a job per file and reports the outcome.
func (a *app) runDemo(ctx context.Context, out io.Writer, cfg config.Config, st *devstack.Stack) error {
	sizes := []int64{0, 1, 64 << 10, 1 << 20, 8 << 20, 32 << 20}
	prod, err := kafkaconn.NewProducer(cfg.Kafka, 0)
	if err != nil {
		return err
	}
	defer prod.Close()
	c, err := workers.Dial(ctx, cfg.Temporal, a.log)
	if err != nil {
		return err
	}
	defer c.Close()
	stamp := time.Now().UTC().Format("20060102-150405")
	var ids []string
	for i, size := range sizes {
		rel := fmt.Sprintf("demo/%s/sample-%d.bin", stamp, i)
		sum, err := samplefile.Write(filepath.Join(st.SFTP.Root, rel), size, uint64(time.Now().UnixNano())+uint64(i))
		if err != nil {
			return err
		}
		j := job.Job{ID: fmt.Sprintf("demo-%s-%d", stamp, i), RemotePath: "/" + rel, MD5: sum, Size: size}
		if _, _, _, err := starter.Submit(prod, cfg.Kafka.JobsTopic, j); err != nil {
			return err
		}
		ids = append(ids, j.ID)
	}
	fmt.Fprintf(out, "demo: submitted %d jobs (sizes %v bytes) for files under %s\n", len(ids), sizes,
		filepath.Join(st.SFTP.Root, "demo", stamp))
	for _, id := range ids {
		r, err := waitWorkflow(ctx, c, job.Job{ID: id}.WorkflowID())
		if err != nil {
			fmt.Fprintf(out, "demo: %s: %v\n", id, err)
			continue
		}
		fmt.Fprintf(out, "demo: %s: %d bytes, md5 %s -> s3://%s/%s (download %.1f MB/s)\n", id, r.Size, r.MD5,
			r.Bucket, r.Key, r.Download.BytesPerSec/1e6)
	}
	fmt.Fprintf(out, "demo: done; see %s\n", cfg.UI.PublicURL)
	return nil
}

// waitWorkflow waits for the workflow to exist and to finish.
func waitWorkflow(ctx context.Context, c client.Client, id string) (workflows.Result, error) {
	var r workflows.Result
	for {
		err := c.GetWorkflow(ctx, id, "").Get(ctx, &r)
		if err == nil || !isNotFound(err) || ctx.Err() != nil {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// temporalBanner says which Temporal runs, where, and where its state lives.
func temporalBanner(t *devstack.Temporal, pg *devstack.Postgres) string {
	if t.Kind == devstack.TemporalServer {
		return fmt.Sprintf("Temporal server %s at %s, state in PostgreSQL :%d (databases temporal, temporal_visibility)",
			t.Version, t.Address, pg.Port)
	}
	return "Temporal dev server at " + t.Address + ", state in one SQLite file"
}

// kafkaBanner says which broker runs, where, and where its data lives.
func kafkaBanner(k *devstack.Kafka) string {
	if k.Kind == devstack.KafkaApache {
		return fmt.Sprintf("Apache Kafka %s (one KRaft node) at %s, data in %s", k.Version, strings.Join(k.Brokers, ","), k.DataDir)
	}
	return fmt.Sprintf("embedded broker (franz-go kfake, in process) at %s, data in %s", strings.Join(k.Brokers, ","), k.DataDir)
}
