-- Named blocks of the `users` projection. `{users}` and `{api_keys}` are the physical tables
-- (the live ones, or fresh ones during a rebuild).

-- name: insert_user
INSERT INTO {users} (user_id, username, role, external_subject, created_at, updated_at, version)
VALUES ($1, $2, $3, $4, $5, $5, $6)
ON CONFLICT (user_id) DO NOTHING

-- name: advance_user
-- Every event of a user's stream moves `version`; an event already seen matches no row.
UPDATE {users}
SET role = coalesce($3, role),
    disabled = coalesce($4, disabled),
    last_login_at = coalesce($5, last_login_at),
    updated_at = CASE WHEN $6 THEN $7 ELSE updated_at END,
    version = $2
WHERE user_id = $1 AND version < $2

-- name: insert_key
INSERT INTO {api_keys} (key_id, user_id, name, prefix, key_sha256, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (key_id) DO NOTHING

-- name: revoke_key
UPDATE {api_keys} SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL
