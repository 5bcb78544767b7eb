-- +goose Up
-- dead_letters: every message read from the dead-letter topic, and what an operator did with it.
-- (topic, partition, kafka_offset) is the message's place on the topic, so indexing it twice is a no-op.
CREATE TABLE dead_letters (
    topic            text NOT NULL,
    partition        integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    job_id           text,                 -- header job_id, else the message key
    msg_key          bytea,
    msg_value        bytea NOT NULL,
    reason           text NOT NULL,
    stage            text NOT NULL,        -- validate, stat, download, verify, promote, upload, ...
    error_type       text,
    attempts         integer,
    workflow_id      text,
    origin_topic     text,                 -- where the job message was first read, when known
    origin_partition integer,
    origin_offset    bigint,
    published_at     timestamptz NOT NULL, -- the dead-letter message's timestamp
    indexed_at       timestamptz NOT NULL DEFAULT now(),
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'replayed', 'discarded')),
    acted_at         timestamptz,          -- when it was replayed or discarded
    acted_by         text,                 -- who: "api-key" or "session"
    replay_partition integer,              -- where the replayed job message went
    replay_offset    bigint,
    PRIMARY KEY (topic, partition, kafka_offset)
);
CREATE INDEX dead_letters_published ON dead_letters (published_at DESC, partition, kafka_offset);
CREATE INDEX dead_letters_state ON dead_letters (state, published_at DESC);

-- Searching jobs by file name scans remote_path; keep it cheap at 100,000 rows.
CREATE INDEX jobs_finished ON jobs (finished_at DESC) WHERE finished_at IS NOT NULL;

-- +goose Down
DROP INDEX jobs_finished;
DROP TABLE dead_letters;
