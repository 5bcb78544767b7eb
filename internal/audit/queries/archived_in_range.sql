-- The latest SUCCEEDED job of each key under @prefix in (@after, @through] (@through '': to the
-- end of the prefix), in S3's byte order, leaving out @except (the keys the bucket listed) and
-- keeping those whose job finished in [@since, @until) when given.
SELECT * FROM (
    SELECT DISTINCT ON (j.s3_key COLLATE "C")
           j.job_id, j.s3_key, j.source, j.remote_path, j.md5_actual, j.size_bytes, j.created_at, j.finished_at,
           COALESCE((SELECT substring(e.detail FROM 14) FROM job_events e
                     WHERE e.job_id = j.job_id AND e.step = 'queued' AND e.detail LIKE 'submitted by %' ORDER BY e.at LIMIT 1),
                    (SELECT 'watcher' FROM watch_files w WHERE w.job_id = j.job_id LIMIT 1)) AS announced_by
    FROM jobs j
    WHERE j.status = 'SUCCEEDED' AND j.s3_bucket = @bucket
      AND j.s3_key COLLATE "C" >= @prefix::text AND starts_with(j.s3_key, @prefix::text)
      AND j.s3_key COLLATE "C" > @after::text
      AND (@through::text = '' OR j.s3_key COLLATE "C" <= @through::text)
      AND NOT (j.s3_key = ANY(@except::text[]))
    ORDER BY j.s3_key COLLATE "C", j.finished_at DESC NULLS LAST, j.created_at DESC, j.job_id DESC
) latest
WHERE (@since::timestamptz IS NULL OR latest.finished_at >= @since::timestamptz)
  AND (@until::timestamptz IS NULL OR latest.finished_at < @until::timestamptz)
ORDER BY latest.s3_key COLLATE "C"
LIMIT @lim
