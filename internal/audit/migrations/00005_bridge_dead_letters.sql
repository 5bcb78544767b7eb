-- +goose Up
-- The bridge records the messages it refuses itself, so they reach this table without the dashboard.
-- origin_ref is "topic/partition/offset" of the refused job message: unique, so a redelivered
-- message is recorded once. NULL for dead letters of workflows (a job may fail again after a replay).
ALTER TABLE dead_letters ADD COLUMN origin_ref text;
CREATE UNIQUE INDEX dead_letters_origin_ref ON dead_letters (origin_ref);
-- read_from_topic: the dashboard's indexer has read this message. A row the bridge wrote starts
-- false, so the indexer's position (the last row it read) never skips a message it has not seen.
ALTER TABLE dead_letters ADD COLUMN read_from_topic boolean NOT NULL DEFAULT true;

-- +goose Down
ALTER TABLE dead_letters DROP COLUMN read_from_topic;
DROP INDEX dead_letters_origin_ref;
ALTER TABLE dead_letters DROP COLUMN origin_ref;
