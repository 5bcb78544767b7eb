SELECT job_id, status, remote_path, size_bytes, md5_expected, md5_actual, s3_bucket, s3_key, workflow_id,
       run_id, host, attempts, bytes_per_sec, error, created_at, started_at, finished_at, updated_at, source
FROM jobs
WHERE (@status::text = '' OR status = @status)
  AND (@name::text = '' OR remote_path ILIKE '%' || @name || '%')
  AND (@source::text = '' OR source = @source)
  AND (@before_id::text = '' OR (created_at, job_id) < (@before_at, @before_id))
ORDER BY created_at DESC, job_id DESC
LIMIT @lim
