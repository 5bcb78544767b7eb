package devstack

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/config"
)

// Options configures Start. Ports of 0 are picked free.
type Options struct {
	// Dir keeps every server's data; a restart with the same Dir keeps the jobs.
	Dir string
	// BinDir holds the temporal and versitygw binaries and the kafka/ broker ("" searches, see FindBin).
	BinDir string
	Ports  config.Dev
	// Headless starts Temporal without its Web UI (tests).
	Headless bool
	// Temporal is the Temporal to run: TemporalDev ("") or TemporalServer, which keeps its state
	// in the stack's PostgreSQL.
	Temporal string
	// Ephemeral keeps the dev server's state in memory (tests).
	Ephemeral bool
	// TemporalShards is the Temporal server's number of history shards (0: its default), fixed
	// when its databases are made.
	TemporalShards int
	// Kafka is the broker to run: KafkaApache ("") or KafkaEmbedded.
	Kafka string
	// KafkaConfig overrides broker settings (server.properties names).
	KafkaConfig map[string]string
	// SFTPReadRate caps the SFTP server's bytes per second (0: unlimited).
	SFTPReadRate int
	Topics       []string
	// Partitions is the number of partitions of each topic (0: 3).
	Partitions  int
	Bucket      string
	S3AccessKey string
	S3SecretKey string
	// Log receives the child servers' output.
	Log    io.Writer
	Logger *slog.Logger
}

// Stack is every server kafkasync needs, running on loopback.
type Stack struct {
	Kafka    *Kafka
	Temporal *Temporal
	SFTP     *SFTP
	S3       *S3
	Postgres *Postgres
	Bucket   string

	// what Restart needs to start a server again as it was
	o                    Options
	dir, pgDir           string
	temporalBin, vgwBin  string
	temporalDB           string
	temporalPort, s3Port int
}

// Start starts the servers (the slow ones in parallel) and stops the started ones on failure.
func Start(ctx context.Context, o Options) (st *Stack, err error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	temporalBin := ""
	if o.Temporal != TemporalServer {
		if temporalBin, err = FindBin(o.BinDir, "temporal"); err != nil {
			return nil, err
		}
	}
	vgwBin, err := FindBin(o.BinDir, "versitygw")
	if err != nil {
		return nil, err
	}
	pgDir, err := PostgresDir(filepath.Join(dir, "postgres"))
	if err != nil {
		return nil, err
	}
	st = &Stack{Bucket: o.Bucket, o: o, dir: dir, pgDir: pgDir, temporalBin: temporalBin, vgwBin: vgwBin}
	if !o.Ephemeral {
		st.temporalDB = filepath.Join(dir, "temporal.db")
	}
	// Fixed ports, so a restarted server is where the clients expect it.
	if st.temporalPort, err = portOrFree(o.Ports.TemporalPort); err != nil {
		return st, err
	}
	if st.s3Port, err = portOrFree(o.Ports.S3Port); err != nil {
		return st, err
	}
	if o.Ports.PGPort, err = portOrFree(o.Ports.PGPort); err != nil {
		return st, err
	}
	st.o = o
	defer func() {
		if err != nil {
			st.Stop()
		}
	}()
	if st.SFTP, err = StartSFTP(SFTPOptions{Dir: filepath.Join(dir, "sftp"), Root: filepath.Join(dir, "sftp-root"),
		Port: o.Ports.SFTPPort, ReadRate: o.SFTPReadRate, Logger: o.Logger}); err != nil {
		return st, err
	}
	g, gctx := errgroup.WithContext(ctx)
	pgUp := make(chan struct{})
	g.Go(func() (err error) {
		kind := cmp.Or(o.Kafka, KafkaApache)
		st.Kafka, err = StartKafka(gctx, KafkaOptions{Kind: kind, BinDir: o.BinDir, Dir: filepath.Join(dir, "kafka-"+kind),
			Port: o.Ports.KafkaPort, Partitions: o.Partitions, Topics: o.Topics, BrokerConfig: o.KafkaConfig, Log: o.Log})
		return err
	})
	g.Go(func() (err error) {
		if o.Temporal == TemporalServer {
			select { // the server keeps its state in PostgreSQL
			case <-pgUp:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		st.Temporal, err = st.startTemporal(gctx)
		return err
	})
	g.Go(func() (err error) {
		st.S3, err = StartS3(gctx, S3Options{Bin: vgwBin, Dir: filepath.Join(dir, "s3"), Port: st.s3Port,
			AccessKey: o.S3AccessKey, SecretKey: o.S3SecretKey, Buckets: []string{o.Bucket}, Log: o.Log})
		return err
	})
	g.Go(func() (err error) {
		if st.Postgres, err = StartPostgres(gctx, pgDir, o.Ports.PGPort, o.Log); err == nil {
			close(pgUp)
		}
		return err
	})
	return st, g.Wait()
}

// Servers that Restart can take down.
const (
	ServerPostgres = "postgres"
	ServerS3       = "s3"
	ServerTemporal = "temporal"
)

// Restart stops one server, waits down, and starts it again on the same port with the same data
// (for fault tests; Temporal keeps its state only when the stack is not Ephemeral).
func (s *Stack) Restart(ctx context.Context, server string, down time.Duration) error {
	switch server {
	case ServerPostgres:
		s.Postgres.Stop()
	case ServerS3:
		s.S3.Stop()
	case ServerTemporal:
		s.Temporal.Stop()
	default:
		return fmt.Errorf("no server %q", server)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	var err error
	switch server {
	case ServerPostgres:
		s.Postgres, err = StartPostgres(ctx, s.pgDir, s.o.Ports.PGPort, s.o.Log)
	case ServerS3:
		s.S3, err = StartS3(ctx, S3Options{Bin: s.vgwBin, Dir: filepath.Join(s.dir, "s3"), Port: s.s3Port,
			AccessKey: s.o.S3AccessKey, SecretKey: s.o.S3SecretKey, Buckets: []string{s.o.Bucket}, Log: s.o.Log})
	case ServerTemporal:
		s.Temporal, err = s.startTemporal(ctx)
	}
	return err
}

// startTemporal starts the stack's Temporal, on its fixed frontend port.
func (s *Stack) startTemporal(ctx context.Context) (*Temporal, error) {
	if s.o.Temporal == TemporalServer {
		return StartTemporalServer(ctx, TemporalServerOptions{BinDir: s.o.BinDir, Dir: filepath.Join(s.dir, "temporal-server"),
			PGPort: s.o.Ports.PGPort, Port: s.temporalPort, UIPort: s.o.Ports.TemporalUI, Headless: s.o.Headless, Log: s.o.Log,
			Shards: s.o.TemporalShards})
	}
	return StartTemporal(ctx, TemporalOptions{Bin: s.temporalBin, DBFile: s.temporalDB, Port: s.temporalPort,
		UIPort: s.o.Ports.TemporalUI, Headless: s.o.Headless, Log: s.o.Log})
}

// Stop stops every server that is running.
func (s *Stack) Stop() {
	if s == nil {
		return
	}
	s.Temporal.Stop()
	s.S3.Stop()
	s.Postgres.Stop()
	s.SFTP.Stop()
	s.Kafka.Stop()
}

// Apply points cfg at the stack's servers.
func (s *Stack) Apply(cfg *config.Config) {
	cfg.Kafka.Brokers = s.Kafka.Brokers
	cfg.Temporal.Address = s.Temporal.Address
	cfg.Temporal.UIURL = s.Temporal.UIURL
	cfg.SFTP.Addr = s.SFTP.Addr
	cfg.SFTP.User = s.SFTP.User
	cfg.SFTP.KeyFile = s.SFTP.KeyFile
	cfg.SFTP.KnownHosts = s.SFTP.KnownHosts
	cfg.SFTP.Password = ""
	cfg.S3.Endpoint = s.S3.Endpoint
	cfg.S3.AccessKey = s.S3.AccessKey
	cfg.S3.SecretKey = config.Secret(s.S3.SecretKey)
	cfg.S3.Bucket = s.Bucket
	cfg.S3.PathStyle = true
	cfg.Postgres.DSN = config.Secret(s.Postgres.DSN)
}

// Env returns the dev.env lines (NAME=value) that let any outside client reach the stack.
func (s *Stack) Env(cfg config.Config) []string {
	m := map[string]string{
		"KAFKA_BROKERS":    strings.Join(s.Kafka.Brokers, ","),
		"JOBS_TOPIC":       cfg.Kafka.JobsTopic,
		"DLQ_TOPIC":        cfg.Kafka.DLQTopic,
		"TEMPORAL_ADDRESS": s.Temporal.Address,
		"TEMPORAL_UI":      s.Temporal.UIURL,
		"SFTP_ADDR":        s.SFTP.Addr,
		"SFTP_USER":        s.SFTP.User,
		"SFTP_KEY_FILE":    s.SFTP.KeyFile,
		"SFTP_KNOWN_HOSTS": s.SFTP.KnownHosts,
		"SFTP_ROOT":        s.SFTP.Root,
		"S3_ENDPOINT":      s.S3.Endpoint,
		"S3_BUCKET":        s.Bucket,
		"S3_ACCESS_KEY":    s.S3.AccessKey,
		"S3_SECRET_KEY":    s.S3.SecretKey,
		"PG_DSN":           s.Postgres.DSN,
		"DASHBOARD_URL":    cfg.UI.PublicURL,
	}
	if cfg.UI.APIKey != "" {
		m["DASHBOARD_API_KEY"] = cfg.UI.APIKey.Reveal()
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%s", k, v))
	}
	sort.Strings(out)
	return out
}

// WriteEnv writes Env to file (mode 0600: it holds the dev stack's credentials).
func (s *Stack) WriteEnv(file string, cfg config.Config) error {
	return os.WriteFile(file, []byte(strings.Join(s.Env(cfg), "\n")+"\n"), 0o600)
}

// Pids names the process id of each server that runs as a child process (the embedded broker and
// the SFTP server run inside this process), for measuring what each one costs.
func (s *Stack) Pids() map[string]int {
	m := map[string]int{}
	for name, p := range map[string]*proc{"temporal": s.Temporal.proc, "temporal-ui": s.Temporal.ui, "versitygw": s.S3.proc, "postgres": s.Postgres.proc, "kafka": s.Kafka.proc} {
		if p != nil {
			m[name] = p.cmd.Process.Pid
		}
	}
	return m
}
