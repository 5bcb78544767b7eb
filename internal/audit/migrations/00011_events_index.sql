-- +goose Up
-- The index of job_events_identity leads with job_id and serves every query of a job's events;
-- this one only cost each event row a third index entry.
DROP INDEX job_events_job;

-- +goose Down
CREATE INDEX job_events_job ON job_events (job_id, at);
