-- +goose Up
-- object_deletions: every object deleted through kafkasync (the dashboard, its API, `kafkasync
-- archive rm`), by whom and when, so a SUCCEEDED job whose object is gone is told apart from one
-- whose object vanished behind kafkasync's back.
CREATE TABLE object_deletions (
    id         bigserial PRIMARY KEY,
    bucket     text NOT NULL,
    key        text NOT NULL,
    version_id text,                  -- the version deleted; on a versioned bucket without one, the delete marker S3 made
    job_id     text,                  -- the SUCCEEDED job that archived the object, when one did
    actor      text NOT NULL,         -- account:<name>, key:<prefix>@<name>, api-key:<8 hex> or session:<8 hex>
    deleted_at timestamptz NOT NULL,
    md5        text                   -- the object's md5 metadata, when it had one
);
CREATE INDEX object_deletions_key ON object_deletions (bucket, key, deleted_at DESC);

-- The archive pages look up the latest SUCCEEDED job of given keys, and of a key range in S3's
-- byte order (hence COLLATE "C"); and who announced a job.
CREATE INDEX jobs_object ON jobs (s3_bucket, (s3_key COLLATE "C")) WHERE status = 'SUCCEEDED';
CREATE INDEX watch_files_job ON watch_files (job_id) WHERE job_id IS NOT NULL;

-- +goose Down
DROP INDEX watch_files_job;
DROP INDEX jobs_object;
DROP TABLE object_deletions;
