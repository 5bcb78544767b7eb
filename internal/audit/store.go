// Package audit keeps the PostgreSQL audit trail: table jobs (one row per job, its latest state) and
// table job_events (one row per step outcome). Writes are idempotent, so a retried activity never
// adds a second row. The schema is documented in docs/AUDIT.md.
package audit

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

//go:embed queries/*.sql
var queries embed.FS

func query(name string) string {
	b, err := queries.ReadFile("queries/" + name + ".sql")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	return string(b)
}

var (
	qRecordJob    = query("record_job")
	qRecordEvents = query("record_event")
	qListJobs     = query("list_jobs")
	qGetJob       = query("get_job")
	qListEvents   = query("list_events")
	qCountStatus  = query("count_status")
)

// Job statuses, as stored in jobs.status.
const (
	StatusQueued       = "QUEUED"
	StatusDownloading  = "DOWNLOADING"
	StatusVerifying    = "VERIFYING"
	StatusUploading    = "UPLOADING"
	StatusSucceeded    = "SUCCEEDED"
	StatusFailed       = "FAILED"
	StatusDeadLettered = "DEAD_LETTERED"
)

// Statuses lists every status in pipeline order.
var Statuses = []string{StatusQueued, StatusDownloading, StatusVerifying, StatusUploading, StatusSucceeded, StatusFailed, StatusDeadLettered}

// ErrNotFound is returned by Job when no row has that job ID.
var ErrNotFound = errors.New("job not found")

// Store reads and writes the audit tables. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	group group
}

// Open connects to PostgreSQL. It does not migrate: call Migrate.
func Open(ctx context.Context, dsn string) (*Store, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres config: %w", err) // pgx masks the password in its errors
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Store{pool: pool}, nil
}

// OpenMigrated connects to PostgreSQL and applies the migrations: what every component does at
// start-up.
func OpenMigrated(ctx context.Context, dsn string) (*Store, error) {
	s, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if _, err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close releases the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pool for read-only reports (the dashboard, tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Migrate applies the embedded migrations under a PostgreSQL advisory lock, so replicas starting
// together do not race. It returns the versions applied now.
func (s *Store) Migrate(ctx context.Context) ([]int64, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var applied []int64
	for _, r := range res {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// Event is one step outcome of one job. Fields left zero do not overwrite what the job row holds.
type Event struct {
	JobID      string
	WorkflowID string
	RunID      string
	// Seq orders the events of one run; (JobID, RunID, Seq) identifies the event, so a retried
	// write is a no-op.
	Seq     int
	Step    string // queued, stat, download, verify, promote, upload, dead_letter, done
	Outcome string // started, succeeded, failed
	// Status is the job status this event moves the job to.
	Status string
	At     time.Time
	Detail string
	Error  string

	RemotePath string
	// Source names the job's SFTP source ("" is default).
	Source      string
	Size        int64 // -1 or 0 with SizeKnown false: unknown
	SizeKnown   bool
	MD5Expected string
	MD5Actual   string
	S3Bucket    string
	S3Key       string
	Host        string
	Attempts    int
	BytesPerSec float64
	// Started marks the first download attempt; Finished the end of the job.
	Started  bool
	Finished bool
}

func nullStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Record writes ev: it upserts the job row and adds the event row, in one transaction. Writing the
// same event again changes nothing.
func (s *Store) Record(ctx context.Context, ev Event) error {
	_, err := s.RecordAll(ctx, []Event{ev})
	return err
}

// Job is one row of table jobs.
type Job struct {
	JobID       string     `json:"job_id"`
	Status      string     `json:"status"`
	RemotePath  string     `json:"remote_path"`
	Size        *int64     `json:"size"`
	MD5Expected *string    `json:"md5_expected"`
	MD5Actual   *string    `json:"md5_actual"`
	S3Bucket    *string    `json:"s3_bucket"`
	S3Key       *string    `json:"s3_key"`
	WorkflowID  string     `json:"workflow_id"`
	RunID       string     `json:"run_id"`
	Host        *string    `json:"host"`
	Attempts    int        `json:"attempts"`
	BytesPerSec *float64   `json:"bytes_per_sec"`
	Error       *string    `json:"error"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Source      string     `json:"source"`
}

// Duration is the time from the first download attempt to the end, or 0 while unknown.
func (j Job) Duration() time.Duration {
	if j.StartedAt == nil || j.FinishedAt == nil {
		return 0
	}
	return j.FinishedAt.Sub(*j.StartedAt)
}

// JobEvent is one row of table job_events.
type JobEvent struct {
	JobID   string    `json:"job_id"`
	RunID   string    `json:"run_id"`
	Seq     int       `json:"seq"`
	Step    string    `json:"step"`
	Outcome string    `json:"outcome"`
	Detail  *string   `json:"detail"`
	Error   *string   `json:"error"`
	At      time.Time `json:"at"`
}

// Filter selects jobs for List. Zero fields select everything.
type Filter struct {
	Status string
	// Name matches any part of the remote path, case-insensitively.
	Name string
	// Source, when set, lists only that source's jobs.
	Source string
	// Before pages: only jobs older than this one (created_at, job_id) are listed.
	BeforeAt time.Time
	BeforeID string
	Limit    int
}

// List returns jobs newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Job, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	rows, err := s.pool.Query(ctx, qListJobs, pgx.NamedArgs{
		"status": f.Status, "name": f.Name, "source": f.Source, "before_at": f.BeforeAt, "before_id": f.BeforeID, "lim": f.Limit,
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Job])
}

// Job returns one job, or ErrNotFound.
func (s *Store) Job(ctx context.Context, id string) (Job, error) {
	rows, err := s.pool.Query(ctx, qGetJob, pgx.NamedArgs{"job_id": id})
	if err != nil {
		return Job{}, fmt.Errorf("get job: %w", err)
	}
	j, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[Job])
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrNotFound
	}
	return j, err
}

// Events returns a job's events in order.
func (s *Store) Events(ctx context.Context, id string) ([]JobEvent, error) {
	rows, err := s.pool.Query(ctx, qListEvents, pgx.NamedArgs{"job_id": id})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[JobEvent])
}

// CountByStatus returns the number of jobs in each status.
func (s *Store) CountByStatus(ctx context.Context) (map[string]int64, error) {
	return s.countStatus(ctx, qCountStatus)
}

// CountSince returns the number of jobs created since since, in each status.
func (s *Store) CountSince(ctx context.Context, since time.Time) (map[string]int64, error) {
	return s.countStatus(ctx, `SELECT status, count(*) FROM jobs WHERE created_at >= $1 GROUP BY status`, since)
}

func (s *Store) countStatus(ctx context.Context, sql string, args ...any) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	out := map[string]int64{}
	var st string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&st, &n}, func() error { out[st] = n; return nil })
	return out, err
}
