package watcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/job"
	"github.com/kafkasync/kafkasync/internal/kafkaconn"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

// The servers every test of the package shares: PostgreSQL, Apache Kafka and the in-process SFTP
// server. Tests keep apart by source name (the state's key), directory and topic.
var srv struct {
	dsn     string
	db      *pgxpool.Pool
	brokers []string
	sftp    *devstack.SFTP
}

// topics are created before the tests run; each test announces on its own.
var topics = []string{"t-slow", "t-restart", "t-crash", "t-pair", "t-big", "t-skip", "t-flat", "t-deep"}

func TestMain(m *testing.M) {
	code, err := runTests(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func runTests(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "kafkasync-watcher-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	// PostgreSQL runs as the postgres user when tests run as root: it must reach its folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, err
	}
	logf, err := os.Create(filepath.Join(dir, "servers.log"))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	stop, err := startServers(dir, logf)
	defer stop()
	if err != nil {
		b, _ := os.ReadFile(logf.Name())
		return 0, fmt.Errorf("start servers: %w\n%s", err, b[max(0, len(b)-4000):])
	}
	return m.Run(), nil
}

// startServers starts PostgreSQL and Kafka side by side, then the SFTP server; stop ends whatever
// started.
func startServers(dir string, logf *os.File) (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var pg *devstack.Postgres
	var k *devstack.Kafka
	stop = func() {
		srv.sftp.Stop()
		if srv.db != nil {
			srv.db.Close()
		}
		k.Stop()
		pg.Stop()
	}
	var g errgroup.Group
	g.Go(func() (err error) {
		pg, err = devstack.StartPostgres(ctx, filepath.Join(dir, "pg"), 0, logf)
		return err
	})
	g.Go(func() (err error) {
		k, err = devstack.StartKafka(ctx, devstack.KafkaOptions{Kind: devstack.KafkaApache, Dir: filepath.Join(dir, "kafka"),
			Topics: topics, Log: logf})
		return err
	})
	if err := g.Wait(); err != nil {
		return stop, err
	}
	store, err := audit.OpenMigrated(ctx, pg.DSN)
	if err != nil {
		return stop, err
	}
	srv.dsn, srv.db, srv.brokers = pg.DSN, store.Pool(), k.Brokers
	srv.sftp, err = devstack.StartSFTP(devstack.SFTPOptions{Dir: filepath.Join(dir, "sftp"), Root: filepath.Join(dir, "root")})
	return stop, err
}

// testConfig is a configuration whose sources (name → watch entries) are all the test SFTP
// server; "default" is the [sftp] section.
func testConfig(sources map[string][]config.Watch) config.Config {
	cfg := config.Default()
	cfg.Kafka.Brokers = srv.brokers
	cfg.Sources = map[string]config.Source{}
	for name, watch := range sources {
		s := config.Source{Addr: srv.sftp.Addr, User: srv.sftp.User, KeyFile: srv.sftp.KeyFile,
			KnownHosts: srv.sftp.KnownHosts, DialTimeout: config.Duration(5 * time.Second), Watch: watch}
		if name == config.DefaultSource {
			cfg.SFTP = s
		} else {
			cfg.Sources[name] = s
		}
	}
	return cfg
}

// entry watches dir, announcing on topic, listed every 100 ms.
func entry(dir, topic string, minAge time.Duration) config.Watch {
	return config.Watch{Dir: dir, MinAge: config.Duration(minAge), Interval: config.Duration(100 * time.Millisecond), Topic: topic}
}

// newWatcher builds a watcher for cfg; a nil producer is a real one.
func newWatcher(t testing.TB, cfg config.Config, prod sarama.SyncProducer, log *slog.Logger) *Watcher {
	t.Helper()
	if prod == nil {
		prod = producer(t)
	}
	w, err := New(Options{Config: cfg, DB: srv.db, DSN: srv.dsn, Producer: prod, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func producer(t testing.TB) sarama.SyncProducer {
	t.Helper()
	p, err := kafkaconn.NewProducer(config.Kafka{Brokers: srv.brokers, ClientID: "watcher-test"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// remote returns the local path of an SFTP path, creating its directory.
func remote(t testing.TB, p string) string {
	t.Helper()
	local := filepath.Join(srv.sftp.Root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		t.Fatal(err)
	}
	return local
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(remote(t, p), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// announced is a job message read back from a topic.
type announced struct {
	job.Job
	key, raw string
}

// readJobs returns the job messages on topic by remote path (several for a path announced more
// than once), each parsed as the bridge would with cfg's policy.
func readJobs(t testing.TB, cfg config.Config, topic string) map[string][]announced {
	t.Helper()
	out := map[string][]announced{}
	for _, m := range testenv.ReadTopic(t, srv.brokers, topic) {
		j, err := cfg.JobPolicy().Parse(m.Key, m.Value)
		if err != nil {
			t.Fatalf("the bridge would refuse %s: %v", m.Value, err)
		}
		out[j.RemotePath] = append(out[j.RemotePath], announced{Job: j, key: string(m.Key), raw: string(m.Value)})
	}
	return out
}

// waitJobs reads topic until it holds at least n messages, or fails the test after timeout.
func waitJobs(t testing.TB, cfg config.Config, topic string, n int, timeout time.Duration) map[string][]announced {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		jobs := readJobs(t, cfg, topic)
		if count(jobs) >= n {
			return jobs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d messages after %v, want %d", topic, count(jobs), timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func count(jobs map[string][]announced) int {
	n := 0
	for _, js := range jobs {
		n += len(js)
	}
	return n
}

// onceEach fails the test unless every path of want was announced exactly once, and nothing else.
func onceEach(t testing.TB, jobs map[string][]announced, want []string) {
	t.Helper()
	for _, p := range want {
		if len(jobs[p]) != 1 {
			t.Errorf("%s announced %d times", p, len(jobs[p]))
		}
	}
	if len(jobs) != len(want) {
		t.Errorf("%d paths announced, want %d", len(jobs), len(want))
	}
}

// logBuffer is a JSON log the test can read back; a failed test prints it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func newLog(t testing.TB) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watcher log:\n%s", b.buf.String())
		}
	})
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// records returns the log records with message msg.
func (b *logBuffer) records(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		var r map[string]any
		if json.Unmarshal(line, &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}
