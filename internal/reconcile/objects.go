package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/s3client"
)

// headsAtOnce bounds the HEAD requests in flight.
const headsAtOnce = 8

// checkObjects HEADs the object of every SUCCEEDED job created since since, adds each difference
// to r, and returns the jobs that differ.
func checkObjects(ctx context.Context, o Options, since time.Time, r *Report) (map[string]bool, error) {
	differing := map[string]bool{}
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, headsAtOnce)
	var wg sync.WaitGroup
	err := eachSucceeded(ctx, o.Store, since, func(j audit.Job) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d, herr := checkObject(ctx, o.S3, j)
			mu.Lock()
			defer mu.Unlock()
			r.Checked++
			if herr != nil && first == nil {
				first = herr
			}
			if d != nil {
				r.Differences = append(r.Differences, *d)
				differing[j.JobID] = true
			}
		})
	})
	wg.Wait()
	return differing, errors.Join(err, first)
}

// eachSucceeded calls f for every SUCCEEDED job created since since, newest first, a page at a time.
func eachSucceeded(ctx context.Context, store *audit.Store, since time.Time, f func(audit.Job)) error {
	filter := audit.Filter{Status: audit.StatusSucceeded, Limit: 1000}
	for {
		jobs, err := store.List(ctx, filter)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.CreatedAt.Before(since) {
				return nil
			}
			f(j)
		}
		if len(jobs) < filter.Limit {
			return nil
		}
		last := jobs[len(jobs)-1]
		filter.BeforeAt, filter.BeforeID = last.CreatedAt, last.JobID
	}
}

// checkObject compares a SUCCEEDED job's object with its row; nil when they agree.
func checkObject(ctx context.Context, s3c *s3.Client, j audit.Job) (*Difference, error) {
	bucket, key, md5 := deref(j.S3Bucket), deref(j.S3Key), deref(j.MD5Actual)
	d := &Difference{JobID: j.JobID, Bucket: bucket, Key: key}
	head, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey") {
		d.Kind, d.Detail = ObjectMissing, "the audit row says SUCCEEDED; the bucket has no such object"
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("head s3://%s/%s: %w", bucket, key, err)
	}
	if got := head.Metadata[s3client.MetaMD5]; got != md5 {
		d.Kind, d.Detail = MD5Differs, fmt.Sprintf("the object's md5 metadata is %q, the job verified %s", got, md5)
		return d, nil
	}
	// A single-part object's ETag is the MD5 of its bytes: replaced bytes show even under the
	// original metadata.
	if etag := strings.Trim(aws.ToString(head.ETag), `"`); len(etag) == 32 && etag != md5 {
		d.Kind, d.Detail = MD5Differs, fmt.Sprintf("the object's bytes have md5 %s (its ETag), the job verified %s", etag, md5)
		return d, nil
	}
	return nil, nil
}
