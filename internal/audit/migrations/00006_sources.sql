-- +goose Up
-- source: the SFTP source a job's file is on ("default" for the [sftp] section).
ALTER TABLE jobs ADD COLUMN source text NOT NULL DEFAULT 'default';
CREATE INDEX jobs_source_created ON jobs (source, created_at DESC);
ALTER TABLE dead_letters ADD COLUMN source text;

-- +goose Down
ALTER TABLE dead_letters DROP COLUMN source;
DROP INDEX jobs_source_created;
ALTER TABLE jobs DROP COLUMN source;
