-- +goose Up
-- Reconciliation looks up, for each consumed job message, the dead letter written for it.
CREATE INDEX dead_letters_origin ON dead_letters (origin_topic, origin_partition, origin_offset);

-- +goose Down
DROP INDEX dead_letters_origin;
