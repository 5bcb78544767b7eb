package devstack

import (
	"context"
	"os"
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
