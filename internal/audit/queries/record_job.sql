-- Skipped when this event was written before: a retried write must not move the job back.
INSERT INTO jobs AS j (job_id, status, remote_path, size_bytes, md5_expected, md5_actual, s3_bucket, s3_key,
                       workflow_id, run_id, host, attempts, bytes_per_sec, error, created_at, started_at,
                       finished_at, updated_at, source)
SELECT @job_id::text, @status::text, @remote_path::text, @size_bytes::bigint, @md5_expected::text,
       @md5_actual::text, @s3_bucket::text, @s3_key::text, @workflow_id::text, @run_id::text, @host::text,
       COALESCE(@attempts::integer, 0), @bytes_per_sec::double precision, @error::text, @at::timestamptz,
       @started_at::timestamptz, @finished_at::timestamptz, @at::timestamptz, @source::text
WHERE NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = @job_id::text AND e.run_id = @run_id::text
                  AND e.seq = @seq::integer AND e.activity_id = '' AND e.attempt = 0)
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
    error         = CASE WHEN EXCLUDED.status = 'SUCCEEDED' THEN NULL ELSE COALESCE(EXCLUDED.error, j.error) END,
    started_at    = COALESCE(j.started_at, EXCLUDED.started_at),
    -- An event after the end (what became of the remote file) keeps the end's time.
    finished_at   = CASE WHEN EXCLUDED.finished_at IS NULL AND EXCLUDED.status = j.status THEN j.finished_at
                         ELSE EXCLUDED.finished_at END,
    updated_at    = EXCLUDED.updated_at
