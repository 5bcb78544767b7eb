INSERT INTO job_events (job_id, run_id, seq, activity_id, attempt, step, outcome, detail, error, at)
SELECT @job_id, @run_id, 0, @activity_id, @attempt, @step, 'failed', @detail, @error, @at
WHERE EXISTS (SELECT 1 FROM jobs WHERE job_id = @job_id)
ON CONFLICT (job_id, run_id, seq, activity_id, attempt) DO NOTHING
