-- Named blocks of the `webhooks` projection. `{webhook_endpoints}` is the physical table (the
-- live one, or a fresh one during a rebuild). The endpoint service's reads, which join the
-- secrets and health tables beside it, are in helix/webhooks/queries.sql.

-- name: created
-- $8: the position after which the endpoint receives events (see the module's docstring).
INSERT INTO {webhook_endpoints} (endpoint_id, owner, url, event_types, type_patterns,
                                 description, enabled, after_position, created_at, updated_at,
                                 version)
VALUES ($1, $2, $3, $4, $5, $6, $7,
        coalesce($8, (SELECT head_position FROM sequencer_state WHERE id = 1)), $9, $9, $10)
ON CONFLICT (endpoint_id) DO NOTHING

-- name: updated
UPDATE {webhook_endpoints}
SET url = coalesce($2, url), event_types = coalesce($3, event_types),
    type_patterns = coalesce($4, type_patterns), description = coalesce($5, description),
    updated_at = $6, version = $7
WHERE endpoint_id = $1

-- name: disabled
UPDATE {webhook_endpoints}
SET enabled = false, disabled_reason = $2, updated_at = $3, version = $4
WHERE endpoint_id = $1

-- name: enabled
UPDATE {webhook_endpoints}
SET enabled = true, disabled_reason = NULL, updated_at = $2, version = $3
WHERE endpoint_id = $1

-- name: secret_rotated
UPDATE {webhook_endpoints}
SET previous_secret_until = $2, updated_at = $3, version = $4
WHERE endpoint_id = $1

-- name: deleted
UPDATE {webhook_endpoints}
SET enabled = false, deleted_at = $2, updated_at = $2, version = $3
WHERE endpoint_id = $1

-- name: applied
-- The version each endpoint in $1 reflects (see projections/seen.py).
SELECT endpoint_id AS id, version FROM {webhook_endpoints} WHERE endpoint_id = ANY ($1::uuid[])
