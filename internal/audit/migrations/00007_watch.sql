-- +goose Up
-- watch_files: what `kafkasync watch` knows of each file it lists, shared by every watcher replica.
-- A row is (re)set when a file is first seen or its size or mtime differ from the row's; the file
-- is announced once stable_since is min_age old, and announced_at and job_id are written only
-- after Kafka acknowledged the job message.
CREATE TABLE watch_files (
    source       text NOT NULL,        -- the source's name, "default" for [sftp]
    path         text NOT NULL,        -- absolute path on the SFTP server
    size         bigint NOT NULL,
    mtime        timestamptz NOT NULL, -- as the server reports it (whole seconds)
    first_seen   timestamptz NOT NULL DEFAULT now(), -- the first listing that showed the path
    stable_since timestamptz NOT NULL DEFAULT now(), -- the first listing that showed this size and mtime
    announced_at timestamptz,          -- NULL until Kafka acknowledged the job message
    job_id       text,                 -- the announced job's id (its workflow is file-<job_id>)
    PRIMARY KEY (source, path)
);

-- +goose Down
DROP TABLE watch_files;
