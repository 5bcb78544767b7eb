-- +goose Up
-- A failed attempt of an activity is an event of its own, written by the worker that ran it:
-- seq 0, the activity's id and its attempt number identify it, so a retried write is a no-op.
ALTER TABLE job_events ADD COLUMN activity_id text NOT NULL DEFAULT '';
ALTER TABLE job_events ADD COLUMN attempt integer NOT NULL DEFAULT 0;
ALTER TABLE job_events DROP CONSTRAINT job_events_job_id_run_id_seq_key;
ALTER TABLE job_events ADD CONSTRAINT job_events_identity UNIQUE (job_id, run_id, seq, activity_id, attempt);

-- +goose Down
ALTER TABLE job_events DROP CONSTRAINT job_events_identity;
DELETE FROM job_events WHERE seq = 0;
ALTER TABLE job_events ADD CONSTRAINT job_events_job_id_run_id_seq_key UNIQUE (job_id, run_id, seq);
ALTER TABLE job_events DROP COLUMN attempt;
ALTER TABLE job_events DROP COLUMN activity_id;
