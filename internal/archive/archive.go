// Package archive is the archive as users see it: the objects of kafkasync's buckets joined with
// the jobs that archived them, each object's bytes checked against its MD5 as they are read, and
// deletions recorded with who made them. The dashboard, its API and `kafkasync archive` share it.
package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/kafkasync/kafkasync/internal/audit"
	"github.com/kafkasync/kafkasync/internal/config"
)

// States of an object on a page.
const (
	// StateArchived: the object is in the bucket and a SUCCEEDED job archived it.
	StateArchived = "archived"
	// StateMD5Differs: the object is a single-part one whose ETag (the MD5 of its bytes) is not the
	// MD5 its job verified: its bytes were replaced.
	StateMD5Differs = "md5_differs"
	// StateNoJob: the object is in the bucket, but no SUCCEEDED job put it there.
	StateNoJob = "no_job"
	// StateObjectMissing: a SUCCEEDED job's object is not in the bucket, and no deletion through
	// kafkasync explains it.
	StateObjectMissing = "object_missing"
	// StateDeleted: a SUCCEEDED job's object was deleted through kafkasync (Object.Deletion says
	// by whom and when).
	StateDeleted = "deleted"
)

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// maxListCalls bounds the ListObjectsV2 calls of one page, even when the date filter drops
	// most entries: the page then ends early, with a cursor.
	maxListCalls = 5
)

// ErrNotFound: no such object (or version) in the bucket.
var ErrNotFound = errors.New("no such object")

// Store is the part of the audit store the archive reads and writes.
type Store interface {
	ArchivedJobs(ctx context.Context, bucket string, keys []string) (map[string]audit.ArchivedJob, error)
	ArchivedInRange(ctx context.Context, r audit.ArchivedRange) ([]audit.ArchivedJob, error)
	ObjectDeletions(ctx context.Context, bucket string, keys []string) (map[string]audit.ObjectDeletion, error)
	RecordObjectDeletion(ctx context.Context, d audit.ObjectDeletion) error
}

// Buckets are the buckets kafkasync writes: the default one first, then each source's own.
func Buckets(cfg config.Config) []string {
	out := []string{cfg.S3.Bucket}
	for _, name := range cfg.SourceNames() {
		if src, ok := cfg.Source(name); ok {
			if b := cfg.BucketFor(src); b != "" && !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out
}

// Query selects one page of a bucket's objects.
type Query struct {
	Bucket string
	Prefix string
	// Since and Until bound the object's LastModified (the job's finished time when the object is
	// gone): Since included, Until excluded; zero: unbounded.
	Since, Until time.Time
	// After is the cursor: the last key of the previous page ("": from the start).
	After string
	// Limit is the page size: 0 is DefaultLimit, at most MaxLimit.
	Limit int
}

func (q Query) inWindow(t time.Time) bool {
	return (q.Since.IsZero() || !t.Before(q.Since)) && (q.Until.IsZero() || t.Before(q.Until))
}

// Page is one page of objects in key order.
type Page struct {
	Bucket  string   `json:"bucket"`
	Prefix  string   `json:"prefix"`
	Objects []Object `json:"objects"`
	// Next is the cursor of the next page (pass it as After); empty on the last page.
	Next string `json:"next"`
}

// Object is one key of the bucket, or of a SUCCEEDED job whose object is gone.
type Object struct {
	Key string `json:"key"`
	// Size, LastModified and ETag are the object's; nil and empty when it is gone.
	Size         *int64     `json:"size"`
	LastModified *time.Time `json:"last_modified"`
	ETag         string     `json:"etag,omitempty"`
	VersionID    string     `json:"version_id,omitempty"`
	// MD5 is what the object's bytes should hash to, as far as the listing knows: its job's MD5.
	// (The object's own md5 metadata costs a HEAD per object; Open reads it.)
	MD5   string  `json:"md5,omitempty"`
	Job   *JobRef `json:"job"`
	State string  `json:"state"`
	// Deletion is the recorded deletion of a deleted object.
	Deletion *audit.ObjectDeletion `json:"deletion,omitempty"`
}

// JobRef is the job that archived an object.
type JobRef struct {
	JobID       string     `json:"job_id"`
	Source      string     `json:"source"`
	RemotePath  string     `json:"remote_path"`
	AnnouncedBy string     `json:"announced_by,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	MD5         string     `json:"md5"`
}

func jobRef(j audit.ArchivedJob) *JobRef {
	return &JobRef{JobID: j.JobID, Source: j.Source, RemotePath: j.RemotePath, AnnouncedBy: deref(j.AnnouncedBy),
		CreatedAt: j.CreatedAt, FinishedAt: j.FinishedAt, MD5: deref(j.MD5)}
}

// List returns a page of the bucket's objects under q.Prefix after q.After, each joined with its
// latest SUCCEEDED job, and the SUCCEEDED jobs of the same key range whose objects are gone.
func List(ctx context.Context, store Store, c *s3.Client, q Query) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	q.Limit = min(q.Limit, MaxLimit)
	l, err := listBucket(ctx, c, q)
	if err != nil {
		return Page{}, err
	}
	through := ""
	if l.truncated {
		through = l.last
	}
	gone, err := store.ArchivedInRange(ctx, audit.ArchivedRange{Bucket: q.Bucket, Prefix: q.Prefix, After: q.After, Through: through,
		Except: l.keys, Since: q.Since, Until: q.Until, Limit: q.Limit + 1})
	if err != nil {
		return Page{}, err
	}
	objs, err := present(ctx, store, q.Bucket, l.shown)
	if err != nil {
		return Page{}, err
	}
	missing, err := absent(ctx, store, q.Bucket, gone)
	if err != nil {
		return Page{}, err
	}
	p := Page{Bucket: q.Bucket, Prefix: q.Prefix, Objects: merge(objs, missing)}
	if l.truncated {
		p.Next = l.last
	}
	// More than a page: it ends at its last object; the next one lists the bucket from there.
	if len(p.Objects) > q.Limit {
		p.Objects = p.Objects[:q.Limit]
		p.Next = p.Objects[q.Limit-1].Key
	}
	return p, nil
}

// listing is what a page's list calls found.
type listing struct {
	shown []types.Object // in the date window
	keys  []string       // every key listed, shown or not: these objects exist
	last  string         // the last key listed
	// truncated: the bucket has keys after last.
	truncated bool
}

// listBucket lists keys after q.After until the page has q.Limit objects in its window, the prefix
// ends, or maxListCalls calls were made.
func listBucket(ctx context.Context, c *s3.Client, q Query) (listing, error) {
	var l listing
	dated := !q.Since.IsZero() || !q.Until.IsZero()
	start := q.After
	l.truncated = true
	for calls := 0; calls < maxListCalls && l.truncated && len(l.shown) < q.Limit; calls++ {
		max := q.Limit - len(l.shown)
		if dated {
			max = MaxLimit // most entries may fall outside the window: fetch many per call
		}
		in := &s3.ListObjectsV2Input{Bucket: aws.String(q.Bucket), MaxKeys: aws.Int32(int32(max))}
		if q.Prefix != "" {
			in.Prefix = aws.String(q.Prefix)
		}
		if start != "" {
			in.StartAfter = aws.String(start)
		}
		out, err := c.ListObjectsV2(ctx, in)
		if err != nil {
			return l, fmt.Errorf("list s3://%s/%s: %w", q.Bucket, q.Prefix, err)
		}
		l.truncated = aws.ToBool(out.IsTruncated)
		for _, o := range out.Contents {
			if len(l.shown) == q.Limit {
				l.truncated = true // keys after this one remain unlisted
				break
			}
			key := aws.ToString(o.Key)
			l.keys, l.last = append(l.keys, key), key
			if q.inWindow(aws.ToTime(o.LastModified)) {
				l.shown = append(l.shown, o)
			}
		}
		if len(out.Contents) == 0 {
			break // nothing more, whatever IsTruncated says
		}
		start = l.last
	}
	if l.last == "" {
		l.truncated = false
	}
	return l, nil
}

// present joins listed objects with their jobs.
func present(ctx context.Context, store Store, bucket string, listed []types.Object) ([]Object, error) {
	keys := make([]string, len(listed))
	for i, o := range listed {
		keys[i] = aws.ToString(o.Key)
	}
	jobs, err := store.ArchivedJobs(ctx, bucket, keys)
	if err != nil {
		return nil, err
	}
	out := make([]Object, len(listed))
	for i, o := range listed {
		obj := Object{Key: keys[i], Size: o.Size, LastModified: o.LastModified, ETag: strings.Trim(aws.ToString(o.ETag), `"`), State: StateNoJob}
		if j, ok := jobs[keys[i]]; ok {
			obj.Job, obj.MD5, obj.State = jobRef(j), deref(j.MD5), StateArchived
			// A single-part object's ETag is the MD5 of its bytes.
			if len(obj.ETag) == 32 && obj.MD5 != "" && !strings.EqualFold(obj.ETag, obj.MD5) {
				obj.State = StateMD5Differs
			}
		}
		out[i] = obj
	}
	return out, nil
}

// absent turns the jobs whose objects are gone into objects: deleted when a deletion recorded
// after the job explains it, missing otherwise.
func absent(ctx context.Context, store Store, bucket string, jobs []audit.ArchivedJob) ([]Object, error) {
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = j.Key
	}
	dels, err := store.ObjectDeletions(ctx, bucket, keys)
	if err != nil {
		return nil, err
	}
	out := make([]Object, len(jobs))
	for i, j := range jobs {
		obj := Object{Key: j.Key, Job: jobRef(j), MD5: deref(j.MD5), State: StateObjectMissing}
		if d, ok := dels[j.Key]; ok && (j.FinishedAt == nil || !d.DeletedAt.Before(*j.FinishedAt)) {
			obj.State, obj.Deletion = StateDeleted, &d
		}
		out[i] = obj
	}
	return out, nil
}

// merge merges two lists sorted by key, in S3's byte order (Go's string order).
func merge(a, b []Object) []Object {
	out := make([]Object, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].Key <= b[0].Key {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchVersion":
			return true
		}
	}
	return false
}
