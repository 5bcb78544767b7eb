// Package testenv starts the real servers for tests (on free loopback ports, data in a temporary
// folder, everything stopped in t.Cleanup) and builds a config pointing at them.
package testenv

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/samplefile"
)

// Env is a running stack and a config for it.
type Env struct {
	Stack *devstack.Stack
	Cfg   config.Config
	Dir   string
}

// Options tune Start.
type Options struct {
	SFTPReadRate int
	// PersistTemporal keeps the dev server's state in a file, so the server can be restarted.
	PersistTemporal bool
	// Temporal names the engine: devstack.TemporalDev ("", the dev server) or
	// devstack.TemporalServer (the Temporal server on the stack's PostgreSQL).
	Temporal string
	// Partitions is the number of partitions of the jobs topic and the dead-letter topic (0: 3).
	Partitions int
	// Kafka names the broker: devstack.KafkaApache or devstack.KafkaEmbedded. Every test says which.
	Kafka string
}

// Start starts every server, or fails the test. The config uses short timeouts suited to tests.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.Kafka == "" {
		t.Fatal("testenv.Options.Kafka: say which broker the test runs against")
	}
	dir, err := os.MkdirTemp("", "kafkasync-test-")
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL runs as the postgres user when tests run as root: it must reach its folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logf, err := os.Create(filepath.Join(dir, "servers.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cfg := config.Default()
	cfg.Kafka.JobsTopic = "jobs"
	cfg.Kafka.DLQTopic, cfg.Kafka.DoneTopic = "jobs.dlq", "jobs.done"
	cfg.S3.Bucket = "kafkasync-test"
	st, err := devstack.Start(ctx, devstack.Options{
		Dir: filepath.Join(dir, "stack"), Headless: true, Ephemeral: !o.PersistTemporal, SFTPReadRate: o.SFTPReadRate,
		Topics: []string{cfg.Kafka.JobsTopic, cfg.Kafka.DLQTopic, cfg.Kafka.DoneTopic}, Partitions: o.Partitions, Kafka: o.Kafka, Temporal: o.Temporal, Bucket: cfg.S3.Bucket,
		S3AccessKey: "test-access", S3SecretKey: "test-secret-key", Log: logf,
	})
	if err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("start servers: %v\n%s", err, tail(b, 4000))
	}
	t.Cleanup(st.Stop)
	st.Apply(&cfg)
	cfg.Temporal.TaskQueue = "kafkasync-test"
	cfg.Temporal.UIURL = ""
	cfg.Transfer.StagingDir = filepath.Join(dir, "data", "staging")
	cfg.Transfer.CompletedDir = filepath.Join(dir, "data", "completed")
	cfg.Transfer.HostID = "test-host"
	cfg.Transfer.RangeSize = 1 << 20
	cfg.Transfer.Connections = 4
	cfg.Transfer.HeartbeatTimeout = config.Duration(2 * time.Second)
	cfg.Transfer.HostTimeout = config.Duration(time.Minute)
	cfg.Transfer.RetryInterval = config.Duration(200 * time.Millisecond)
	cfg.Transfer.MaxAttempts = 4
	cfg.Transfer.VerifyAttempts = 2
	cfg.S3.PartSize = 5 << 20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &Env{Stack: st, Cfg: cfg, Dir: dir}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// WriteFile writes size pseudo-random bytes (seeded) to rel under the SFTP root and returns its MD5.
func (e *Env) WriteFile(t testing.TB, rel string, size int64, seed uint64) string {
	t.Helper()
	sum, err := samplefile.Write(filepath.Join(e.Stack.SFTP.Root, rel), size, seed)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// Logger returns a logger writing to a file in the test's folder; a failed test prints its tail.
func (e *Env) Logger(t testing.TB) *slog.Logger {
	f, err := os.OpenFile(filepath.Join(e.Dir, "test.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			t.Logf("log tail:\n%s", tail(b, 8000))
		}
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
