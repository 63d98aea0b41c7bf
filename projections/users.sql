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

-- name: applied
-- The version each user in $1 reflects.
SELECT user_id AS id, version FROM {users} WHERE user_id = ANY ($1::uuid[])

-- name: insert_key
INSERT INTO {api_keys} (key_id, user_id, name, prefix, key_sha256, created_at, scopes, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (key_id) DO NOTHING

-- name: revoke_key
UPDATE {api_keys} SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL

-- name: expire_key
UPDATE {api_keys} SET expired_at = $2 WHERE key_id = $1 AND expired_at IS NULL

-- name: tokens_valid_after
UPDATE {users} SET tokens_valid_after = greatest(tokens_valid_after, $2) WHERE user_id = $1

-- name: revoke_token
-- Revoked tokens are kept only until they would have expired anyway: each revocation prunes
-- the ones past their `exp` (a rebuild replays old revocations and prunes them the same way).
WITH pruned AS (DELETE FROM {revoked_tokens} WHERE expires_at < now())
INSERT INTO {revoked_tokens} (token_id, user_id, expires_at, revoked_at)
SELECT $1, $2, $3, $4 WHERE $3 >= now()
ON CONFLICT (token_id) DO NOTHING
