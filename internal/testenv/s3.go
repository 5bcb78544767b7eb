package testenv

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/kafkasync/kafkasync/internal/devstack"
)

// StartS3 starts the S3-API server alone (versitygw, data in a temporary folder) with the buckets
// created, for tests that need no other server of the stack.
func StartS3(t testing.TB, buckets ...string) *devstack.S3 {
	t.Helper()
	bin, err := devstack.FindBin("", "versitygw")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kafkasync-s3-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := devstack.StartS3(ctx, devstack.S3Options{Bin: bin, Dir: dir, AccessKey: "test-access", SecretKey: "test-secret-key",
		Buckets: buckets, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
