-- Named blocks of the `jobs` projection. `{jobs}` is the physical table (live, or fresh during
-- a rebuild); the read queries at the end always name the live one. Every block that changes a
-- job sets `updated_at` ($2) and `version` ($3) with the job id in $1.

-- name: queued
INSERT INTO {jobs} (job_id, project_id, owner, status, start_phase, model, requested_by,
                    worker_id, fencing_token, lease_expires_at, attempt, max_attempts, not_before,
                    progress, cost_tokens, cost_usd, error, cancel_requested, cancel_reason,
                    dead_lettered, created_at, started_at, finished_at, updated_at, version,
                    pause_requested, max_duration_s)
VALUES ($1, $4, $5, 'queued', $6, $7, $8, NULL, 0, NULL, 0, $9, NULL, 0, 0, 0, NULL, false, NULL,
        false, $2, NULL, NULL, $2, $3, false, $10)
ON CONFLICT (job_id) DO NOTHING

-- name: claimed
UPDATE {jobs}
SET worker_id = $4, fencing_token = $5, lease_expires_at = $6, attempt = $7, not_before = NULL,
    waiting_since = NULL, updated_at = $2, version = $3
WHERE job_id = $1

-- name: lease_renewed
UPDATE {jobs} SET lease_expires_at = $4, updated_at = $2, version = $3 WHERE job_id = $1

-- name: started
UPDATE {jobs}
SET status = 'running', started_at = coalesce(started_at, $2), updated_at = $2, version = $3
WHERE job_id = $1

-- name: touched
UPDATE {jobs} SET updated_at = $2, version = $3 WHERE job_id = $1

-- name: cost
UPDATE {jobs}
SET cost_tokens = cost_tokens + $4, cost_usd = cost_usd + $5, updated_at = $2, version = $3
WHERE job_id = $1

-- name: progress
UPDATE {jobs} SET progress = $4, updated_at = $2, version = $3 WHERE job_id = $1

-- name: cancel_requested
UPDATE {jobs}
SET cancel_requested = true, cancel_reason = $4, updated_at = $2, version = $3
WHERE job_id = $1

-- name: cancelled
UPDATE {jobs}
SET status = 'cancelled', lease_expires_at = NULL, waiting_since = NULL, finished_at = $2,
    updated_at = $2, version = $3
WHERE job_id = $1

-- name: pause_requested
UPDATE {jobs} SET pause_requested = true, updated_at = $2, version = $3 WHERE job_id = $1

-- name: paused
UPDATE {jobs}
SET status = 'paused', pause_requested = false, worker_id = NULL, lease_expires_at = NULL,
    not_before = NULL, waiting_since = NULL, updated_at = $2, version = $3
WHERE job_id = $1

-- name: resumed
UPDATE {jobs}
SET status = CASE WHEN status = 'paused' THEN 'queued' ELSE status END,
    pause_requested = false, updated_at = $2, version = $3
WHERE job_id = $1

-- name: stuck
UPDATE {jobs}
SET worker_id = NULL, lease_expires_at = NULL, updated_at = $2, version = $3
WHERE job_id = $1

-- name: waiting
UPDATE {jobs} SET waiting_since = $2, updated_at = $2, version = $3 WHERE job_id = $1

-- name: retry_scheduled
UPDATE {jobs} SET status = 'queued', not_before = $4, updated_at = $2, version = $3
WHERE job_id = $1

-- name: completed
UPDATE {jobs}
SET status = 'completed', progress = 100, lease_expires_at = NULL, waiting_since = NULL,
    finished_at = $2, updated_at = $2, version = $3
WHERE job_id = $1

-- name: failed
UPDATE {jobs}
SET status = 'failed', error = $4, dead_lettered = $5, lease_expires_at = NULL,
    waiting_since = NULL, finished_at = $2, updated_at = $2, version = $3
WHERE job_id = $1

-- name: get
SELECT * FROM {jobs} WHERE job_id = $1

-- name: list
-- $1 owner (NULL: everyone's; `Viewer.owner_filter`, spliced in by `helix.access`), $2 project_id, $3 status.
SELECT * FROM {jobs}
WHERE {owner_visible}
  AND ($2::uuid IS NULL OR project_id = $2)
  AND ($3::text IS NULL OR status = $3)
ORDER BY created_at DESC, job_id
LIMIT $4 OFFSET $5

-- name: count
SELECT count(*) FROM {jobs}
WHERE {owner_visible}
  AND ($2::uuid IS NULL OR project_id = $2)
  AND ($3::text IS NULL OR status = $3)

-- name: count_running
SELECT count(*) FROM {jobs} WHERE owner = $1 AND status = 'running'

-- name: claimable
-- The oldest queued job a worker offering capabilities $1 (a jsonb array) may take at time $2:
-- due, not cancelling, its project not paused, every phase still to run covered, its owner
-- under the running limit $3. Rows another claimer holds are skipped, not waited for; $4 lists
-- jobs this claimer already turned down in this transaction.
SELECT j.job_id, j.owner
FROM jobs j
JOIN projects p ON p.project_id = j.project_id
WHERE j.status = 'queued'
  AND NOT j.cancel_requested
  AND (j.not_before IS NULL OR j.not_before <= $2)
  AND p.status <> 'paused'
  AND NOT EXISTS (
      SELECT 1 FROM job_phases ph
      WHERE ph.job_id = j.job_id
        AND ph.status IN ('pending', 'running')
        AND NOT ph.capabilities <@ $1::jsonb)
  AND (SELECT count(*) FROM jobs r WHERE r.owner = j.owner AND r.status = 'running') < $3
  AND j.job_id <> ALL($4::uuid[])
ORDER BY j.created_at, j.job_id
LIMIT 1
FOR UPDATE OF j SKIP LOCKED

-- name: try_lock_owner
-- Serializes the concurrency-limit checks of one owner's claims; a claimer that cannot have it
-- at once moves on to another job.
SELECT pg_try_advisory_xact_lock(hashtextextended('helix.jobs.owner:' || $1, 0))

-- name: expired_leases
-- Running jobs whose lease ran out before $1, with the token the reaper expires.
SELECT job_id, fencing_token FROM jobs
WHERE status = 'running' AND lease_expires_at <= $1
ORDER BY lease_expires_at
LIMIT $2

-- name: overrun
-- Running jobs past their duration limit at $1, with the token the reaper fails them under.
SELECT job_id, fencing_token FROM jobs
WHERE status = 'running' AND max_duration_s IS NOT NULL
  AND started_at + make_interval(secs => max_duration_s) <= $1
ORDER BY started_at
LIMIT $2

-- name: unreported_waiting
-- Queued jobs not yet said to be waiting that no online worker can claim: none offers every
-- capability their phases still to run need (the `claimable` block's match), oldest first, at
-- most $1. The reaper decides each through its decider, which says it once.
SELECT j.job_id FROM jobs j
WHERE j.status = 'queued' AND j.waiting_since IS NULL AND NOT j.cancel_requested
  AND NOT EXISTS (
      SELECT 1 FROM workers w
      WHERE w.online
        AND NOT EXISTS (
            SELECT 1 FROM job_phases ph
            WHERE ph.job_id = j.job_id
              AND ph.status IN ('pending', 'running')
              AND NOT ph.capabilities <@ w.capabilities))
ORDER BY j.created_at, j.job_id
LIMIT $1

-- name: needs
-- The phases still to run of jobs $1 (an array): capabilities and whether each has a command.
SELECT job_id, capabilities, command IS NOT NULL AS has_command FROM job_phases
WHERE job_id = ANY($1::uuid[]) AND status IN ('pending', 'running')
ORDER BY job_id, ordinal

-- name: next_due
-- When the next retry becomes claimable (NULL: none waits), so claimers can sleep until then.
SELECT min(not_before) FROM jobs WHERE status = 'queued' AND not_before > $1
