-- Named blocks of the `jobs` projection. `{jobs}` is the physical table (live, or fresh during
-- a rebuild); the read queries at the end always name the live one. Every block that changes a
-- job sets `updated_at` ($2) and `version` ($3) with the job id in $1, and changes it only from
-- the version before (`version = $3 - 1`): an inline apply is then one statement, and one that
-- changes no row (a gap, or already applied) is looked at again (projections/seen.py). A block
-- with a CTE answers `SELECT 1 FROM` its change, so its command tag still says whether it
-- changed the job's row.
--
-- A block that changes the job's status keeps its owner's running count in `{job_owners}` in
-- the same statement: `before` reads the row as the statement's snapshot has it, `after` is the
-- update's result. The snapshot holds the job's previous event: the events of one job are
-- applied one transaction after another (its stream's version admits one appender at a time,
-- and the second one's statements start after the first committed).

-- name: before
SELECT status FROM {jobs} WHERE job_id = $1

-- name: running_follows
, follows AS (
    INSERT INTO {job_owners} AS c (owner, running)
    SELECT after.owner, (after.status = 'running')::int - (before.status = 'running')::int
    FROM before, after
    WHERE (after.status = 'running') <> (before.status = 'running')
    ON CONFLICT (owner) DO UPDATE SET running = c.running + excluded.running)
SELECT 1 FROM after

-- name: queued
-- The owner's running count starts at 0 with its first job (so every owner with a job has one,
-- as the migration that introduced the counts left them).
WITH queued AS (
INSERT INTO {jobs} (job_id, project_id, owner, status, start_phase, model, requested_by,
                    worker_id, fencing_token, lease_expires_at, attempt, max_attempts, not_before,
                    progress, cost_tokens, cost_usd, error, cancel_requested, cancel_reason,
                    dead_lettered, created_at, started_at, finished_at, updated_at, version,
                    pause_requested, max_duration_s, priority)
VALUES ($1, $4, $5, 'queued', $6, $7, $8, NULL, 0, NULL, 0, $9, NULL, 0, 0, 0, NULL, false, NULL,
        false, $2, NULL, NULL, $2, $3, false, $10, $11)
ON CONFLICT (job_id) DO NOTHING
RETURNING owner), owners AS (
    INSERT INTO {job_owners} (owner, running) SELECT owner, 0 FROM queued
    ON CONFLICT (owner) DO NOTHING)
SELECT 1 FROM queued

-- name: claimed
UPDATE {jobs}
SET worker_id = $4, fencing_token = $5, lease_expires_at = $6, attempt = $7, not_before = NULL,
    waiting_since = NULL, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: lease_renewed
UPDATE {jobs} SET lease_expires_at = $4, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: started
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = 'running', started_at = coalesce(started_at, $2), updated_at = $2, version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: touched
UPDATE {jobs} SET updated_at = $2, version = $3 WHERE job_id = $1 AND version = $3 - 1

-- name: cost
UPDATE {jobs}
SET cost_tokens = cost_tokens + $4, cost_usd = cost_usd + $5, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: progress
UPDATE {jobs} SET progress = $4, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: cancel_requested
UPDATE {jobs}
SET cancel_requested = true, cancel_reason = $4, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: cancelled
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = 'cancelled', lease_expires_at = NULL, waiting_since = NULL, finished_at = $2,
        updated_at = $2, version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: pause_requested
UPDATE {jobs} SET pause_requested = true, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: paused
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = 'paused', pause_requested = false, worker_id = NULL, lease_expires_at = NULL,
        not_before = NULL, waiting_since = NULL, updated_at = $2, version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: resumed
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = CASE WHEN status = 'paused' THEN 'queued' ELSE status END,
        pause_requested = false, updated_at = $2, version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: stuck
UPDATE {jobs}
SET worker_id = NULL, lease_expires_at = NULL, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: waiting
UPDATE {jobs} SET waiting_since = $2, updated_at = $2, version = $3
WHERE job_id = $1 AND version = $3 - 1

-- name: retry_scheduled
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = 'queued', not_before = $4, pause_requested = false, updated_at = $2,
        version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: completed
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = 'completed', progress = 100, lease_expires_at = NULL, waiting_since = NULL,
        finished_at = $2, updated_at = $2, version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: failed
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = 'failed', error = $4, dead_lettered = $5, lease_expires_at = NULL,
        waiting_since = NULL, finished_at = $2, updated_at = $2, version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: requeued
WITH before AS ({before}), after AS (
    UPDATE {jobs}
    SET status = 'queued', max_attempts = $4, dead_lettered = false, error = NULL,
        not_before = NULL, worker_id = NULL, lease_expires_at = NULL, waiting_since = NULL,
        finished_at = NULL, pause_requested = false, updated_at = $2, version = $3
    WHERE job_id = $1 AND version = $3 - 1
    RETURNING owner, status)
{running_follows}

-- name: applied
-- The version each job in $1 reflects (see projections/seen.py).
SELECT job_id AS id, version FROM {jobs} WHERE job_id = ANY ($1::uuid[])

-- name: get
SELECT * FROM {jobs} WHERE job_id = $1

-- name: list
-- $1 owner (NULL: everyone's; `Viewer.owner_filter`, spliced in by `helix.access`), $2 project_id, $3 status,
-- $4 priority (its rank), $5 dead_lettered (NULL: both).
SELECT * FROM {jobs}
WHERE {owner_visible}
  AND ($2::uuid IS NULL OR project_id = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::smallint IS NULL OR priority = $4)
  AND ($5::boolean IS NULL OR dead_lettered = $5)
ORDER BY created_at DESC, job_id
LIMIT $6 OFFSET $7

-- name: count
SELECT count(*) FROM {jobs}
WHERE {owner_visible}
  AND ($2::uuid IS NULL OR project_id = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::smallint IS NULL OR priority = $4)
  AND ($5::boolean IS NULL OR dead_lettered = $5)

-- name: claim_filter
-- A job a worker offering capabilities $1 (a jsonb array) may take at time $2: queued and not
-- cancelling (what the claim indexes hold), due, its owner under the running limit $3 (the kept
-- count), its project not paused, every phase still to run covered, and not among the jobs $4
-- this claimer already turned down in this transaction. The checks of other tables are scalar
-- subqueries on purpose: each runs for a candidate as the index hands it over, where a NOT
-- EXISTS would become an anti-join, and the join would make the planner sort every claimable
-- job instead of reading the index in order and stopping at the first that passes.
j.status = 'queued'
  AND NOT j.cancel_requested
  AND (j.not_before IS NULL OR j.not_before <= $2)
  AND j.job_id <> ALL($4::uuid[])
  AND coalesce((SELECT o.running FROM job_owners o WHERE o.owner = j.owner), 0) < $3
  AND (SELECT p.status FROM projects p WHERE p.project_id = j.project_id) <> 'paused'
  AND NOT coalesce(
      (SELECT bool_or(NOT ph.capabilities <@ $1::jsonb) FROM job_phases ph
       WHERE ph.job_id = j.job_id AND ph.status IN ('pending', 'running')),
      false)

-- name: claimable
-- The next job to claim, locked; rows another claimer holds are skipped, not waited for. A job
-- queued at or before $5 (now less the priority aging; NULL: no aging) goes first, oldest
-- first; otherwise the highest priority, oldest first within it. Each is the first entry of a
-- partial index (`jobs_claim_age_idx`, `jobs_claim_order_idx`) that passes the filter, and the
-- second is read only when the first finds none (COALESCE stops at the first non-null).
SELECT job_id, owner FROM jobs
WHERE job_id = coalesce(
    (SELECT j.job_id FROM jobs j
     WHERE {claim_filter} AND j.created_at <= $5
     ORDER BY j.created_at, j.job_id
     LIMIT 1 FOR UPDATE OF j SKIP LOCKED),
    (SELECT j.job_id FROM jobs j
     WHERE {claim_filter}
     ORDER BY j.priority DESC, j.created_at, j.job_id
     LIMIT 1 FOR UPDATE OF j SKIP LOCKED))

-- name: running
SELECT running FROM job_owners WHERE owner = $1

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
