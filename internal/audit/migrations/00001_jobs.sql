-- +goose Up
-- jobs: one row per job, the latest state. Operators query this table directly.
CREATE TABLE jobs (
    job_id        text PRIMARY KEY,
    status        text NOT NULL CHECK (status IN ('QUEUED', 'DOWNLOADING', 'VERIFYING', 'UPLOADING',
                                               'SUCCEEDED', 'FAILED', 'DEAD_LETTERED')),
    remote_path   text NOT NULL,
    size_bytes    bigint,                 -- NULL until known
    md5_expected  text,                   -- from the job message; NULL when it carried none
    md5_actual    text,                   -- computed from the downloaded bytes
    s3_bucket     text,
    s3_key        text,
    workflow_id   text NOT NULL,
    run_id        text NOT NULL,
    host          text,                   -- worker host that holds the staging file
    attempts      integer NOT NULL DEFAULT 0, -- download attempts so far
    bytes_per_sec double precision,       -- download throughput of the successful attempt
    error         text,                   -- last error, NULL once it succeeded
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,            -- first download attempt
    finished_at   timestamptz,            -- SUCCEEDED, FAILED or DEAD_LETTERED
    updated_at    timestamptz NOT NULL
);
CREATE INDEX jobs_status_created ON jobs (status, created_at DESC);
CREATE INDEX jobs_created ON jobs (created_at DESC, job_id DESC);

-- job_events: one row per step outcome, in order. (job_id, run_id, seq) makes retried writes idempotent.
CREATE TABLE job_events (
    id       bigserial PRIMARY KEY,
    job_id   text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    run_id   text NOT NULL,
    seq      integer NOT NULL,
    step     text NOT NULL,   -- queued, stat, download, verify, promote, upload, dead_letter, done
    outcome  text NOT NULL,   -- started, succeeded, failed
    detail   text,
    error    text,
    at       timestamptz NOT NULL,
    UNIQUE (job_id, run_id, seq)
);
CREATE INDEX job_events_job ON job_events (job_id, at);

-- +goose Down
DROP TABLE job_events;
DROP TABLE jobs;
