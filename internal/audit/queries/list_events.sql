SELECT job_id, run_id, seq, step, outcome, detail, error, at
FROM job_events
WHERE job_id = @job_id
ORDER BY at, id
