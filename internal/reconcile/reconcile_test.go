package reconcile_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/reconcile"
	"github.com/kafkasync/kafkasync/internal/s3client"
	"github.com/kafkasync/kafkasync/internal/testenv"
)

// start starts the stack on Apache Kafka, whose offsets by time and committed group offsets the
// ledger reads.
func start(t *testing.T) (*testenv.Env, *audit.Store, *s3.Client) {
	env := testenv.Start(t, testenv.Options{Kafka: devstack.KafkaApache, Partitions: 2})
	store, err := audit.OpenMigrated(context.Background(), env.Cfg.Postgres.DSN.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	s3c, err := s3client.New(env.Cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	return env, store, s3c
}

func sum(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// A clean archive reconciles with no difference; an object deleted behind kafkasync's back, one
// whose bytes were replaced under the original metadata, and one whose metadata differs are each
// reported against their job.
func TestReconcileFindsEachPlantedDifference(t *testing.T) {
	env, store, s3c := start(t)
	ctx := context.Background()
	o := reconcile.Options{Store: store, S3: s3c}
	bucket := env.Cfg.S3.Bucket
	put := func(key string, body []byte, md5 string) {
		t.Helper()
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
			Metadata: map[string]string{s3client.MetaMD5: md5}}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now().Add(-time.Minute)
	for i, id := range []string{"a", "b", "c", "d"} {
		body := []byte(fmt.Sprintf("the bytes of %s", id))
		key := "rec/" + id
		put(key, body, sum(body))
		if err := store.Record(ctx, audit.Event{JobID: id, WorkflowID: "file-" + id, RunID: "r", Seq: 1, Step: "upload", Outcome: "succeeded",
			Status: audit.StatusSucceeded, At: start.Add(time.Duration(i) * time.Second), RemotePath: "/" + key, MD5Actual: sum(body),
			S3Bucket: bucket, S3Key: key, Finished: true}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := reconcile.Check(ctx, o, start.Add(-time.Second))
	if err != nil || r.Checked != 4 || len(r.Differences) != 0 || r.Statuses[audit.StatusSucceeded] != 4 {
		t.Fatalf("clean archive: %+v %v", r, err)
	}
	if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("rec/b")}); err != nil {
		t.Fatal(err)
	}
	put("rec/c", []byte("other bytes"), sum([]byte("the bytes of c")))
	put("rec/d", []byte("the bytes of d"), sum([]byte("something else")))
	r, err = reconcile.Check(ctx, o, start.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"c " + reconcile.MD5Differs, "d " + reconcile.MD5Differs, "b " + reconcile.ObjectMissing}
	if len(r.Differences) != len(want) {
		t.Fatalf("differences %+v, want %v", r.Differences, want)
	}
	for i, d := range r.Differences {
		if d.JobID+" "+d.Kind != want[i] || d.Key != "rec/"+d.JobID {
			t.Fatalf("difference %d: %+v, want %s", i, d, want[i])
		}
	}
	// A window that starts after the jobs holds none of them.
	if r, err := reconcile.Check(ctx, o, time.Now().Add(time.Minute)); err != nil || r.Checked != 0 || len(r.Differences) != 0 {
		t.Fatalf("empty window: %+v %v", r, err)
	}
}
