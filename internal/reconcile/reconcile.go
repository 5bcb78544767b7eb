// Package reconcile checks that what the audit trail says was archived is in the bucket: every
// SUCCEEDED job of a window has its object, with the MD5 the job verified.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/metrics"
	"github.com/kafkasync/kafkasync/internal/s3client"
)

// Kinds of difference.
const (
	ObjectMissing = "object_missing" // a SUCCEEDED row whose object is gone
	MD5Differs    = "md5_differs"    // the object's stored MD5 is not the job's
)

// Difference is one thing the ledger does not account for.
type Difference struct {
	Kind   string `json:"kind"`
	JobID  string `json:"job_id"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Detail string `json:"detail"`
}

// Report is the ledger of a window: the jobs by status, the archived ones whose objects were
// checked, and every difference found.
type Report struct {
	Since       time.Time        `json:"since"`
	Statuses    map[string]int64 `json:"statuses"`
	Checked     int              `json:"checked"`
	Differences []Difference     `json:"differences"`
}

// headsAtOnce bounds the HEAD requests in flight.
const headsAtOnce = 8

// Check reconciles the jobs created since since against the bucket.
func Check(ctx context.Context, store *audit.Store, s3c *s3.Client, since time.Time) (Report, error) {
	r := Report{Since: since}
	var err error
	if r.Statuses, err = store.CountSince(ctx, since); err != nil {
		return r, err
	}
	var mu sync.Mutex
	sem := make(chan struct{}, headsAtOnce)
	var wg sync.WaitGroup
	err = eachSucceeded(ctx, store, since, func(j audit.Job) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d, herr := checkObject(ctx, s3c, j)
			mu.Lock()
			defer mu.Unlock()
			r.Checked++
			if herr != nil && err == nil {
				err = herr
			}
			if d != nil {
				r.Differences = append(r.Differences, *d)
			}
		})
	})
	wg.Wait()
	if err == nil {
		metrics.ReconcileDifferences.Set(float64(len(r.Differences)))
	}
	sort.Slice(r.Differences, func(i, k int) bool { return r.Differences[i].JobID < r.Differences[k].JobID })
	return r, err
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

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
