UPDATE sessions SET revoked_at = now()
WHERE id_sha256 = @id_sha256 AND revoked_at IS NULL
