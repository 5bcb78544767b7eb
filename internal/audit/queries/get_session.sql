SELECT id_sha256, who, remote_addr, created_at, expires_at, revoked_at
FROM sessions
WHERE id_sha256 = @id_sha256 AND revoked_at IS NULL AND expires_at > now()
