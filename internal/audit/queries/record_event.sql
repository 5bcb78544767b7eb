INSERT INTO job_events (job_id, run_id, seq, step, outcome, detail, error, at)
VALUES (@job_id, @run_id, @seq, @step, @outcome, @detail, @error, @at)
ON CONFLICT (job_id, run_id, seq, activity_id, attempt) DO NOTHING
