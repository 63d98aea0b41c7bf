-- Named blocks of the `projects` projection. `{projects}` is the physical table (the live one,
-- or a fresh one during a rebuild); the read queries at the end always name the live one. Every
-- block that changes a project changes it only from the version before its own (see jobs.sql).

-- name: created
INSERT INTO {projects} (project_id, name, description, project_type, owner, status, archived,
                        phases, latest_job_id, message_count, created_at, updated_at, version,
                        max_job_duration_s)
VALUES ($1, $2, $3, $4, $5, 'draft', false, '[]'::jsonb, NULL, 0, $6, $6, $7, $8)
ON CONFLICT (project_id) DO NOTHING

-- name: updated
UPDATE {projects}
SET name = coalesce($2, name), description = coalesce($3, description),
    project_type = coalesce($4, project_type), updated_at = $5, version = $6,
    -- NULL: unchanged; 0: the project's own limit cleared.
    max_job_duration_s = CASE WHEN $7::float8 IS NULL THEN max_job_duration_s
                              ELSE nullif($7::float8, 0) END
WHERE project_id = $1 AND version = $6 - 1

-- name: phases_planned
UPDATE {projects} SET phases = $2, updated_at = $3, version = $4
WHERE project_id = $1 AND version = $4 - 1

-- name: status_changed
UPDATE {projects}
SET status = $2, latest_job_id = coalesce($3, latest_job_id), updated_at = $4, version = $5
WHERE project_id = $1 AND version = $5 - 1

-- name: message_posted
UPDATE {projects}
SET message_count = message_count + 1, updated_at = $2, version = $3
WHERE project_id = $1 AND version = $3 - 1

-- name: archived
UPDATE {projects} SET archived = true, updated_at = $2, version = $3
WHERE project_id = $1 AND version = $3 - 1

-- name: unarchived
UPDATE {projects} SET archived = false, updated_at = $2, version = $3
WHERE project_id = $1 AND version = $3 - 1

-- name: applied
-- The version each project in $1 reflects (see projections/seen.py).
SELECT project_id AS id, version FROM {projects} WHERE project_id = ANY ($1::uuid[])

-- name: get
SELECT * FROM {projects} WHERE project_id = $1

-- name: list
-- $1 owner (NULL: everyone's; `Viewer.owner_filter`, spliced in by `helix.access`), $2 status, $3 project_type, $4 archived (NULL: both).
SELECT * FROM {projects}
WHERE {owner_visible}
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR project_type = $3)
  AND ($4::boolean IS NULL OR archived = $4)
ORDER BY created_at DESC, project_id
LIMIT $5 OFFSET $6

-- name: count
SELECT count(*) FROM {projects}
WHERE {owner_visible}
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR project_type = $3)
  AND ($4::boolean IS NULL OR archived = $4)

-- name: lock_owner
-- Serializes the quota checks of one owner's creations.
SELECT pg_advisory_xact_lock(hashtextextended('helix.projects.owner:' || $1, 0))

-- name: count_active
SELECT count(*) FROM {projects} WHERE owner = $1 AND NOT archived
