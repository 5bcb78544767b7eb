package testenv

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kafkasync/kafkasync/internal/devstack"
	"github.com/kafkasync/kafkasync/internal/s3client"
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

// PutObject stores body at bucket/key with sum as its expected MD5, as kafkasync's upload records it.
func PutObject(t testing.TB, c *s3.Client, bucket, key string, body []byte, sum string) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), Metadata: map[string]string{s3client.MetaMD5: sum}}); err != nil {
		t.Fatal(err)
	}
}
