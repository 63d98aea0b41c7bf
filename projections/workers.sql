-- Named blocks of the worker registry: the `workers` projection (registration and
-- online/offline, folded from the worker streams; `{workers}` is the live table or a fresh one
-- during a rebuild) and the `worker_heartbeats` runtime table (liveness that is not an event:
-- reported status, current job, latest resources, last heartbeat). The reads join the two.

-- name: registered
INSERT INTO {workers} (worker_id, user_id, name, hostname, capabilities, resources, online,
                       registered_at, offline_since, version)
VALUES ($1, $2, $3, $4, $5, $6, true, $7, NULL, $8)
ON CONFLICT (worker_id) DO NOTHING

-- name: went_offline
UPDATE {workers} SET online = false, offline_since = $2, version = $3 WHERE worker_id = $1

-- name: came_online
UPDATE {workers} SET online = true, offline_since = NULL, version = $2 WHERE worker_id = $1

-- name: pruned
DELETE FROM {workers} WHERE worker_id = $1

-- name: view
-- A worker as the API shows it: the registry row with its liveness. A worker that has not
-- beaten yet (or since an import) is idle since its registration; an offline one has no job.
SELECT w.worker_id, w.user_id, w.name, w.hostname, w.capabilities,
       coalesce(h.resources, w.resources) AS resources,
       CASE WHEN w.online THEN coalesce(h.status, 'idle') ELSE 'offline' END AS status,
       w.online,
       CASE WHEN w.online THEN h.current_job_id END AS current_job_id,
       w.registered_at,
       coalesce(h.last_heartbeat_at, w.registered_at) AS last_heartbeat_at,
       w.offline_since
FROM workers w LEFT JOIN worker_heartbeats h USING (worker_id)

-- name: get
{view} WHERE w.worker_id = $1

-- name: get_for_update
-- Locks the registry row: a heartbeat and the reaper's offline round take turns on it.
{view} WHERE w.worker_id = $1 FOR UPDATE OF w

-- name: list
-- $1 user (NULL: everyone's), $2 online (NULL: both).
{view}
WHERE ($1::uuid IS NULL OR w.user_id = $1)
  AND ($2::boolean IS NULL OR w.online = $2)
ORDER BY w.registered_at, w.worker_id
LIMIT $3 OFFSET $4

-- name: count
SELECT count(*) FROM workers w
WHERE ($1::uuid IS NULL OR w.user_id = $1)
  AND ($2::boolean IS NULL OR w.online = $2)

-- name: offers
-- The distinct capability sets of the workers online ($1 true) or of every registered one.
SELECT DISTINCT capabilities FROM workers WHERE online OR NOT $1

-- name: heartbeat
-- $1 worker, $2 status, $3 current job, $4 resources (NULL: unchanged), $5 time.
INSERT INTO worker_heartbeats AS h (worker_id, status, current_job_id, resources,
                                    last_heartbeat_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (worker_id) DO UPDATE
SET status = $2, current_job_id = $3, resources = coalesce($4, h.resources),
    last_heartbeat_at = $5

-- name: silent
-- Online workers silent since before $1, oldest first, at most $2, their registry rows locked
-- (one skipped if a heartbeat holds it); the caller marks each offline through its decider.
SELECT w.worker_id, coalesce(h.last_heartbeat_at, w.registered_at) AS last_heartbeat_at
FROM workers w LEFT JOIN worker_heartbeats h USING (worker_id)
WHERE w.online AND coalesce(h.last_heartbeat_at, w.registered_at) < $1
ORDER BY 2
LIMIT $2
FOR UPDATE OF w SKIP LOCKED

-- name: prunable
-- Workers offline since before $1, oldest first, at most $2, their registry rows locked (one
-- skipped if a heartbeat holds it); the caller prunes each through its decider.
SELECT worker_id FROM workers
WHERE NOT online AND offline_since < $1
ORDER BY offline_since
LIMIT $2
FOR UPDATE SKIP LOCKED

-- name: forget_heartbeat
DELETE FROM worker_heartbeats WHERE worker_id = $1
