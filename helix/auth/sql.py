"""The SQL of authentication and user management: reads of the users read model, and the
writes of the tables that are not projections (passwords, key usage, secrets)."""

from __future__ import annotations

USER_COLUMNS = (
    "u.user_id, u.username, u.role, u.disabled, u.external_subject, u.created_at, "
    "u.updated_at, u.last_login_at, u.version"
)

USER_BY_ID = f"SELECT {USER_COLUMNS} FROM users u WHERE u.user_id = $1"
USER_BY_USERNAME = f"SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1"
USER_BY_EXTERNAL_SUBJECT = f"SELECT {USER_COLUMNS} FROM users u WHERE u.external_subject = $1"
USERNAME_TAKEN = "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)"
LIST_USERS = f"""
SELECT {USER_COLUMNS}, count(*) OVER () AS total
FROM users u
WHERE ($1::text IS NULL OR u.role = $1)
ORDER BY u.username
LIMIT $2 OFFSET $3
"""
COUNT_USERS = "SELECT count(*) FROM users"
OTHER_ENABLED_ADMINS = (
    "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled AND user_id <> $1"
)

PASSWORD_OF = "SELECT password_hash FROM user_passwords WHERE user_id = $1"
SET_PASSWORD = """
INSERT INTO user_passwords (user_id, password_hash, updated_at) VALUES ($1, $2, now())
ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = now()
"""

KEY_COLUMNS = "k.key_id, k.user_id, k.name, k.prefix, k.created_at, k.revoked_at, ku.last_used_at"
KEY_BY_ID = f"""
SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN api_key_usage ku USING (key_id)
WHERE k.key_id = $1
"""
KEYS_OF_USER = f"""
SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN api_key_usage ku USING (key_id)
WHERE k.user_id = $1 AND ($2 OR k.revoked_at IS NULL)
ORDER BY k.created_at, k.key_id
"""
PREFIX_TAKEN = "SELECT EXISTS (SELECT 1 FROM api_keys WHERE prefix = $1)"
KEY_FOR_AUTH = f"""
SELECT k.key_id, k.key_sha256, k.revoked_at, {USER_COLUMNS}
FROM api_keys k JOIN users u USING (user_id)
WHERE k.prefix = $1
"""
# Written at most every few seconds per key, so a busy key does not write on every request.
TOUCH_KEY = """
INSERT INTO api_key_usage AS ku (key_id, last_used_at) VALUES ($1, now())
ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at
WHERE ku.last_used_at < excluded.last_used_at - interval '5 seconds'
"""

SECRET_INSERT = "INSERT INTO helix_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING"
SECRET_GET = "SELECT value FROM helix_secrets WHERE name = $1"

# Serializes the checks that keep at least one enabled admin, and the first-start admin.
ADMIN_LOCK_KEY = 0x48454C4958_0100  # "HELIX" · 256
ADMIN_LOCK = f"SELECT pg_advisory_xact_lock({ADMIN_LOCK_KEY})"
