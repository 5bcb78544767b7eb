-- Rows stay 90 days after they expire, so an acted_by of session:<id> can still be traced to
-- its login; older ones go here, so the table stays bounded by the logins of that window.
WITH pruned AS (
    DELETE FROM sessions WHERE expires_at < now() - interval '90 days'
)
INSERT INTO sessions (id_sha256, who, remote_addr, created_at, expires_at)
VALUES (@id_sha256, @who, @remote_addr, now(), now() + make_interval(secs => @ttl_seconds::double precision))
RETURNING id_sha256, who, remote_addr, created_at, expires_at, revoked_at
