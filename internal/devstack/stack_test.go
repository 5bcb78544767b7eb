package devstack

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"

	"github.com/kafkasync/kafkasync/internal/config"
	"github.com/kafkasync/kafkasync/internal/sftpdial"
)

func TestStackStartsEveryServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kafkasync-stack-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := Start(ctx, Options{Dir: dir, Headless: true, Ephemeral: true, Topics: []string{"jobs"},
		Bucket: "kafkasync-test", S3AccessKey: "ak", S3SecretKey: "sk-secret", Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Stop)

	c, err := pgx.Connect(ctx, st.Postgres.DSN)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("postgres query: %v", err)
	}
	c.Close(ctx)

	if _, err := st.S3.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: ptr("kafkasync-test")}); err != nil {
		t.Fatalf("s3 bucket: %v", err)
	}
	cfg := config.Default()
	st.Apply(&cfg)
	d, err := sftpdial.New(cfg.SFTP)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(st.SFTP.Root+"/hello.txt", []byte("hi"), 0o644)
	sc, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("sftp: %v", err)
	}
	fi, err := sc.Stat("/hello.txt")
	if err != nil || fi.Size() != 2 {
		t.Fatalf("sftp stat: %v %v", fi, err)
	}
	sc.Close()
	if len(st.Kafka.Brokers) != 1 {
		t.Fatalf("kafka brokers: %v", st.Kafka.Brokers)
	}
}

func ptr(s string) *string { return &s }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

// A dev server that dies while starting (as when a port it picked was taken meanwhile) is started
// again: the first start here is a program that exits at once, the second the real server.
func TestTemporalStartedAgainAfterEarlyExit(t *testing.T) {
	bin, err := FindBin("", "temporal")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "temporal")
	script := "#!/bin/sh\nif [ ! -e " + dir + "/started ]; then touch " + dir + "/started; echo 'listen tcp: address already in use' >&2; exit 2; fi\nexec " + bin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	w := &syncWriter{w: &log}
	tp, err := StartTemporal(ctx, TemporalOptions{Bin: wrapper, Headless: true, Log: w})
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	defer tp.Stop()
	w.mu.Lock()
	said := log.String()
	w.mu.Unlock()
	if !strings.Contains(said, "starting it again on fresh ports") {
		t.Fatalf("log does not say the server was started again:\n%s", said)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
