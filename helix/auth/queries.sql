-- Named SQL of authentication and user management: reads of the users read model, and the
-- writes of the tables that are not projections (passwords, key usage, secrets).
-- `{user_columns}` and `{key_columns}` are fragments, spliced in by helix/auth/sql.py.

-- name: user_columns
u.user_id, u.username, u.role, u.disabled, u.external_subject, u.created_at,
u.updated_at, u.last_login_at, u.version, u.tokens_valid_after

-- name: user_by_id
SELECT {user_columns} FROM users u WHERE u.user_id = $1

-- name: user_by_username
SELECT {user_columns} FROM users u WHERE u.username = $1

-- name: user_by_external_subject
SELECT {user_columns} FROM users u WHERE u.external_subject = $1

-- name: username_taken
SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)

-- name: list_users
SELECT {user_columns}, count(*) OVER () AS total
FROM users u
WHERE ($1::text IS NULL OR u.role = $1)
ORDER BY u.username
LIMIT $2 OFFSET $3

-- name: count_users
SELECT count(*) FROM users

-- name: other_enabled_admins
SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled AND user_id <> $1

-- name: password_of
SELECT password_hash FROM user_passwords WHERE user_id = $1

-- name: set_password
INSERT INTO user_passwords (user_id, password_hash, updated_at) VALUES ($1, $2, now())
ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = now()

-- name: key_columns
k.key_id, k.user_id, k.name, k.prefix, k.created_at, k.revoked_at, ku.last_used_at,
k.scopes, k.expires_at, k.expired_at, ou.role AS owner_role

-- name: key_by_id
SELECT {key_columns}
FROM api_keys k JOIN users ou USING (user_id) LEFT JOIN api_key_usage ku USING (key_id)
WHERE k.key_id = $1

-- name: keys_of_user
SELECT {key_columns}
FROM api_keys k JOIN users ou USING (user_id) LEFT JOIN api_key_usage ku USING (key_id)
WHERE k.user_id = $1 AND ($2 OR k.revoked_at IS NULL)
ORDER BY k.created_at, k.key_id

-- name: prefix_taken
SELECT EXISTS (SELECT 1 FROM api_keys WHERE prefix = $1)

-- name: key_for_auth
SELECT k.key_id, k.key_sha256, k.revoked_at, k.scopes, k.expires_at, k.expired_at,
       {user_columns}
FROM api_keys k JOIN users u USING (user_id)
WHERE k.prefix = $1

-- name: touch_key
-- Written at most every $2 seconds per key, so a busy key does not write on every request, and
-- without a row lock unless it writes: an UPDATE whose condition is false on the row locks
-- nothing (an ON CONFLICT DO UPDATE would lock the row whatever its WHERE said), and the first
-- use inserts with DO NOTHING, which never locks either. Concurrent requests of one key so never
-- queue behind one another's commit here.
WITH touched AS (
    UPDATE api_key_usage SET last_used_at = now()
    WHERE key_id = $1 AND last_used_at < now() - make_interval(secs => $2)
    RETURNING key_id)
INSERT INTO api_key_usage (key_id, last_used_at)
SELECT $1, now() WHERE NOT EXISTS (SELECT 1 FROM api_key_usage WHERE key_id = $1)
ON CONFLICT (key_id) DO NOTHING

-- name: token_revoked
SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE token_id = $1)

-- name: secret_insert
INSERT INTO helix_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING

-- name: secret_get
SELECT value FROM helix_secrets WHERE name = $1

-- name: admin_lock
-- Serializes the checks that keep at least one enabled admin, and the first-start admin.
-- The key is 0x48454C4958_0100: "HELIX" · 256.
SELECT pg_advisory_xact_lock(20342392273502464)
