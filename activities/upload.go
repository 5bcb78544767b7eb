package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/kafkasync/kafkasync/internal/metrics"
)

// MetaMD5 is the object metadata key holding the file's MD5 (x-amz-meta-md5).
const MetaMD5 = "md5"

// UploadInput names the promoted file and its object key.
type UploadInput struct {
	JobID string
	Key   string
	MD5   string
	Size  int64
}

// UploadResult says where the object is.
type UploadResult struct {
	Bucket string
	Key    string
	// Skipped is true when the object already had this MD5 and size.
	Skipped bool
	Seconds float64
}

// Upload sends completed/<key> to the bucket as a multipart upload, with the MD5 as object metadata.
// An object already there with the same MD5 and size is left alone, so retries and re-runs are
// idempotent.
func (a *Transfer) Upload(ctx context.Context, in UploadInput) (_ UploadResult, err error) {
	start := time.Now()
	defer func() { metrics.Observe("upload", start, err) }()
	res := UploadResult{Bucket: a.Bucket, Key: in.Key}
	head, err := a.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(a.Bucket), Key: aws.String(in.Key)})
	if err == nil && head.Metadata[MetaMD5] == in.MD5 && aws.ToInt64(head.ContentLength) == in.Size {
		res.Skipped = true
		return res, nil
	}
	if err != nil && !isNotFound(err) {
		return res, fmt.Errorf("head s3://%s/%s: %w", a.Bucket, in.Key, err)
	}
	// An earlier attempt that died mid-upload (a killed worker) left its multipart upload open:
	// abort it, so the bucket keeps no orphaned parts.
	if n, err := a.abortStale(ctx, in.Key); err != nil {
		return res, err
	} else if n > 0 {
		a.log(ctx, in.JobID).Info("aborted incomplete multipart uploads of an earlier attempt", "key", in.Key, "uploads", n)
	}
	f, err := a.Completed.Open(in.Key)
	if err != nil {
		return res, fmt.Errorf("upload open %s: %w", in.Key, err)
	}
	defer f.Close()
	body := &progressReader{r: f}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(a.heartbeatEvery())
		defer t.Stop()
		for {
			select {
			case <-t.C:
				heartbeat(ctx, body.n.Load())
			case <-stop:
				return
			}
		}
	}()
	tm := transfermanager.New(a.S3, func(o *transfermanager.Options) {
		if a.PartSize > 0 {
			o.PartSizeBytes = a.PartSize
		}
		if a.Concurrency > 0 {
			o.Concurrency = a.Concurrency
		}
	})
	_, err = tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:        aws.String(a.Bucket),
		Key:           aws.String(in.Key),
		Body:          body,
		ContentLength: aws.Int64(in.Size),
		Metadata:      map[string]string{MetaMD5: in.MD5},
	})
	if err != nil {
		return res, fmt.Errorf("upload s3://%s/%s: %w", a.Bucket, in.Key, err)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// abortStale aborts every incomplete multipart upload of exactly key and returns how many.
func (a *Transfer) abortStale(ctx context.Context, key string) (int, error) {
	n := 0
	p := s3.NewListMultipartUploadsPaginator(a.S3, &s3.ListMultipartUploadsInput{Bucket: aws.String(a.Bucket), Prefix: aws.String(key)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list multipart uploads of s3://%s/%s: %w", a.Bucket, key, err)
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) != key {
				continue
			}
			_, err := a.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(a.Bucket), Key: u.Key, UploadId: u.UploadId})
			if err != nil && !isNotFound(err) {
				return n, fmt.Errorf("abort multipart upload %s of s3://%s/%s: %w", aws.ToString(u.UploadId), a.Bucket, key, err)
			}
			n++
		}
	}
	return n, nil
}

func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchUpload", "404":
			return true
		}
	}
	return false
}

type progressReader struct {
	r io.Reader
	n atomic.Int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	metrics.Bytes.WithLabelValues("upload").Add(float64(n))
	return n, err
}
