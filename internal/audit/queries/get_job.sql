SELECT job_id, status, remote_path, size_bytes, md5_expected, md5_actual, s3_bucket, s3_key, workflow_id,
       run_id, host, attempts, bytes_per_sec, error, created_at, started_at, finished_at, updated_at, source
FROM jobs
WHERE job_id = @job_id
