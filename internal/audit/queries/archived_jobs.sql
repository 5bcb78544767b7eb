-- The latest SUCCEEDED job of each of @keys in @bucket, with who announced it: the account that
-- submitted it on the dashboard (its queued event says so), else the watcher when it announced it.
SELECT DISTINCT ON (j.s3_key COLLATE "C")
       j.job_id, j.s3_key, j.source, j.remote_path, j.md5_actual, j.size_bytes, j.created_at, j.finished_at,
       COALESCE((SELECT substring(e.detail FROM 14) FROM job_events e
                 WHERE e.job_id = j.job_id AND e.step = 'queued' AND e.detail LIKE 'submitted by %' ORDER BY e.at LIMIT 1),
                (SELECT 'watcher' FROM watch_files w WHERE w.job_id = j.job_id LIMIT 1)) AS announced_by
FROM jobs j
-- The keys compared in "C", the collation of the jobs_object index: compared in the column's own, the
-- planner could not use it and read every row of the table once per key.
WHERE j.status = 'SUCCEEDED' AND j.s3_bucket = @bucket AND j.s3_key COLLATE "C" = ANY(@keys::text[])
ORDER BY j.s3_key COLLATE "C", j.finished_at DESC NULLS LAST, j.created_at DESC, j.job_id DESC
