-- +goose Up
-- accounts: the people and programs that use the dashboard and its API, each with one role.
-- password_hash is bcrypt's; NULL for an account that only uses API keys.
CREATE TABLE accounts (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    disabled_at   timestamptz,
    disabled_by   text
);

-- api_keys: an account's keys. The key is shown once; only its SHA-256 is kept (a random 32-byte
-- key needs no slow hash). prefix (its first 8 characters) names it in lists and the audit trail.
CREATE TABLE api_keys (
    id_sha256   text PRIMARY KEY CHECK (id_sha256 ~ '^[0-9a-f]{64}$'),
    prefix      text NOT NULL UNIQUE,
    account     text NOT NULL REFERENCES accounts (name),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    revoked_at  timestamptz,
    revoked_by  text,
    last_used   timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE accounts;
