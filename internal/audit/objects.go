package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	qArchivedJobs    = query("archived_jobs")
	qArchivedInRange = query("archived_in_range")
)

// ArchivedJob is the latest SUCCEEDED job of an object key: what the archive pages show of it.
type ArchivedJob struct {
	JobID      string     `json:"job_id"`
	Key        string     `json:"-"`
	Source     string     `json:"source"`
	RemotePath string     `json:"remote_path"`
	MD5        *string    `json:"md5"`
	Size       *int64     `json:"size"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// AnnouncedBy is the account that submitted the job on the dashboard, "watcher" when `kafkasync
	// watch` announced it, nil for a job message some other producer sent.
	AnnouncedBy *string `json:"announced_by"`
}

// ArchivedJobs returns the latest SUCCEEDED job of each key of bucket that has one.
func (s *Store) ArchivedJobs(ctx context.Context, bucket string, keys []string) (map[string]ArchivedJob, error) {
	if len(keys) == 0 {
		return map[string]ArchivedJob{}, nil
	}
	return byKey(ctx, s, "archived jobs", func(j ArchivedJob) string { return j.Key },
		qArchivedJobs, pgx.NamedArgs{"bucket": bucket, "keys": keys})
}

// byKey runs a query of rows of T, at most one a key, and returns them by key; what names the
// query in its errors.
func byKey[T any](ctx context.Context, s *Store, what string, key func(T) string, sql string, args ...any) (map[string]T, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByPos[T])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := make(map[string]T, len(items))
	for _, it := range items {
		out[key(it)] = it
	}
	return out, nil
}

// ArchivedRange selects the SUCCEEDED jobs of a key range, for the keys the bucket did not list.
type ArchivedRange struct {
	Bucket, Prefix string
	// After excludes, Through includes ("": up to the end of the prefix); byte order, as S3 lists.
	After, Through string
	// Except are keys to leave out (the bucket has them).
	Except []string
	// Since and Until bound the job's finished time (zero: unbounded).
	Since, Until time.Time
	Limit        int
}

// ArchivedInRange returns the latest SUCCEEDED job of each key in r, in byte order of the key.
func (s *Store) ArchivedInRange(ctx context.Context, r ArchivedRange) ([]ArchivedJob, error) {
	if r.Limit <= 0 || r.Limit > 10000 {
		r.Limit = 1000
	}
	if r.Except == nil {
		r.Except = []string{}
	}
	rows, err := s.pool.Query(ctx, qArchivedInRange, pgx.NamedArgs{"bucket": r.Bucket, "prefix": r.Prefix, "after": r.After,
		"through": r.Through, "except": r.Except, "since": nullTime(r.Since), "until": nullTime(r.Until), "lim": r.Limit})
	if err != nil {
		return nil, fmt.Errorf("archived jobs in range: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[ArchivedJob])
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// ObjectDeletion is one row of table object_deletions: an object deleted through kafkasync.
type ObjectDeletion struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	VersionID *string   `json:"version_id"`
	JobID     *string   `json:"job_id"`
	Actor     string    `json:"deleted_by"`
	DeletedAt time.Time `json:"deleted_at"`
	MD5       *string   `json:"md5"`
}

// RecordObjectDeletion records a deletion and, when the object was a job's, adds it to that job's
// timeline (step object_deleted), in one transaction: the job page then says who deleted it.
func (s *Store) RecordObjectDeletion(ctx context.Context, d ObjectDeletion) error {
	if d.Bucket == "" || d.Key == "" || d.Actor == "" {
		return fmt.Errorf("audit: a deletion needs bucket, key and actor")
	}
	if d.DeletedAt.IsZero() {
		d.DeletedAt = time.Now()
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO object_deletions (bucket, key, version_id, job_id, actor, deleted_at, md5)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			d.Bucket, d.Key, d.VersionID, d.JobID, d.Actor, d.DeletedAt, d.MD5).Scan(&id); err != nil {
			return err
		}
		if d.JobID == nil {
			return nil
		}
		detail := fmt.Sprintf("s3://%s/%s deleted by %s", d.Bucket, d.Key, d.Actor)
		if d.VersionID != nil {
			detail += ", version " + *d.VersionID
		}
		// run_id names the deletion, as dead-letter actions name their letter: its own event identity.
		_, err := tx.Exec(ctx, `INSERT INTO job_events (job_id, run_id, seq, step, outcome, detail, at)
			SELECT $1, $2, 0, 'object_deleted', 'succeeded', $3, $4 WHERE EXISTS (SELECT 1 FROM jobs WHERE job_id = $1)
			ON CONFLICT DO NOTHING`, *d.JobID, fmt.Sprintf("deletion/%d", id), detail, d.DeletedAt)
		return err
	})
	if err != nil {
		return fmt.Errorf("record deletion of s3://%s/%s: %w", d.Bucket, d.Key, err)
	}
	return nil
}

// ObjectDeletions returns the latest recorded deletion of each key of bucket that has one.
func (s *Store) ObjectDeletions(ctx context.Context, bucket string, keys []string) (map[string]ObjectDeletion, error) {
	if len(keys) == 0 {
		return map[string]ObjectDeletion{}, nil
	}
	return byKey(ctx, s, "object deletions", func(d ObjectDeletion) string { return d.Key },
		`SELECT DISTINCT ON (key) bucket, key, version_id, job_id, actor, deleted_at, md5
		FROM object_deletions WHERE bucket = $1 AND key = ANY($2::text[]) ORDER BY key, deleted_at DESC, id DESC`, bucket, keys)
}
