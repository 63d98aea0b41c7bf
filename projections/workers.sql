-- Named blocks of the worker registry (table `workers`). Registration, going offline and
-- coming back are events written in the same transaction; heartbeats only update the row.

-- name: insert
INSERT INTO workers (worker_id, user_id, name, hostname, capabilities, resources, status,
                     online, current_job_id, registered_at, last_heartbeat_at, offline_since)
VALUES ($1, $2, $3, $4, $5, $6, 'idle', true, NULL, $7, $7, NULL)

-- name: get
SELECT * FROM workers WHERE worker_id = $1

-- name: get_for_update
SELECT * FROM workers WHERE worker_id = $1 FOR UPDATE

-- name: heartbeat
-- $1 worker, $2 status, $3 current job, $4 resources (NULL: unchanged), $5 time.
UPDATE workers
SET status = $2, current_job_id = $3, resources = coalesce($4, resources),
    last_heartbeat_at = $5, online = true, offline_since = NULL
WHERE worker_id = $1

-- name: list
-- $1 user (NULL: everyone's), $2 online (NULL: both).
SELECT * FROM workers
WHERE ($1::uuid IS NULL OR user_id = $1)
  AND ($2::boolean IS NULL OR online = $2)
ORDER BY registered_at, worker_id
LIMIT $3 OFFSET $4

-- name: count
SELECT count(*) FROM workers
WHERE ($1::uuid IS NULL OR user_id = $1)
  AND ($2::boolean IS NULL OR online = $2)

-- name: go_offline
-- Workers silent since before $1, marked offline; the caller records an event for each.
UPDATE workers
SET online = false, status = 'offline', offline_since = $2, current_job_id = NULL
WHERE worker_id IN (
    SELECT worker_id FROM workers
    WHERE online AND last_heartbeat_at < $1
    ORDER BY last_heartbeat_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED)
RETURNING worker_id, last_heartbeat_at
