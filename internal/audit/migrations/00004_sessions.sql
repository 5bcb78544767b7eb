-- +goose Up
-- sessions: dashboard logins, kept here so that a logout or a new API key ends them at once.
-- The cookie holds a random 32-byte token; only the token's SHA-256 is stored, so reading this
-- table does not let anyone log in.
CREATE TABLE sessions (
    id_sha256   text PRIMARY KEY CHECK (id_sha256 ~ '^[0-9a-f]{64}$'),
    who         text NOT NULL,        -- the credential that logged in: api-key:<first 8 hex of sha256(key)>
    remote_addr text NOT NULL,        -- the address the login came from
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz           -- set by logout; NULL while the session may be used
);
-- Logins prune sessions long expired; the index keeps that cheap.
CREATE INDEX sessions_expires ON sessions (expires_at);

-- +goose Down
DROP TABLE sessions;
