-- The job row after one flush of events: $1–$19 are the row as the flush's events would leave a new
-- job; an existing job takes the same fields, and $21–$25 say how its error and finished time move.
-- Skipped when the flush's last event ($20) was written before: a retried write must not move the
-- job back.
INSERT INTO jobs AS j (job_id, status, remote_path, size_bytes, md5_expected, md5_actual, s3_bucket, s3_key,
                       workflow_id, run_id, host, attempts, bytes_per_sec, error, created_at, started_at,
                       finished_at, updated_at, source)
SELECT $1::text, $2::text, $3::text, $4::bigint, $5::text, $6::text, $7::text, $8::text, $9::text, $10::text,
       $11::text, $12::integer, $13::double precision, $14::text, $15::timestamptz, $16::timestamptz,
       $17::timestamptz, $18::timestamptz, $19::text
WHERE NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = $1::text AND e.run_id = $10::text
                  AND e.seq = $20::integer AND e.activity_id = '' AND e.attempt = 0)
ON CONFLICT (job_id) DO UPDATE SET
    status        = EXCLUDED.status,
    remote_path   = EXCLUDED.remote_path,
    workflow_id   = EXCLUDED.workflow_id,
    run_id        = EXCLUDED.run_id,
    size_bytes    = COALESCE(EXCLUDED.size_bytes, j.size_bytes),
    md5_expected  = COALESCE(EXCLUDED.md5_expected, j.md5_expected),
    md5_actual    = COALESCE(EXCLUDED.md5_actual, j.md5_actual),
    s3_bucket     = COALESCE(EXCLUDED.s3_bucket, j.s3_bucket),
    s3_key        = COALESCE(EXCLUDED.s3_key, j.s3_key),
    host          = COALESCE(EXCLUDED.host, j.host),
    attempts      = GREATEST(EXCLUDED.attempts, j.attempts),
    bytes_per_sec = COALESCE(EXCLUDED.bytes_per_sec, j.bytes_per_sec),
    -- set by the flush (a success clears it), else kept
    error         = CASE WHEN $21::boolean THEN $22::text ELSE j.error END,
    started_at    = COALESCE(j.started_at, EXCLUDED.started_at),
    -- set by the flush, else kept while the status stays what it was (an event after the end keeps
    -- the end's time), else cleared
    finished_at   = CASE WHEN $23::boolean THEN $24::timestamptz
                         WHEN j.status = $25::text THEN j.finished_at END,
    updated_at    = EXCLUDED.updated_at
