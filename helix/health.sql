-- Named SQL of the readiness checks (helix/health.py).

-- name: database_up
SELECT 1

-- name: current_revision
SELECT version_num FROM alembic_version

-- name: leader_held
-- A bigint advisory key shows in pg_locks split in two: classid ($1) the high 32 bits, objid
-- ($2) the low 32, and objsubid 1.
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND classid::bigint = $1 AND objid::bigint = $2

-- The gauges /metrics shows (helix/health.py, log_gauges), read together in one transaction so
-- that lags measured against the head agree with it.

-- name: gauge_positions
-- The head and the webhook dispatcher's checkpoint (no row yet: it has dispatched nothing).
SELECT (SELECT head_position FROM sequencer_state WHERE id = 1) AS head,
       (SELECT position FROM webhook_dispatcher WHERE id = 1) AS dispatched

-- name: gauge_projections
SELECT name, position FROM projection_checkpoints ORDER BY name

-- name: gauge_deliveries
-- Webhook deliveries by outcome: `failed` are pending ones whose attempts so far all failed
-- (they wait for a retry), `pending` have not been tried yet.
SELECT CASE WHEN status = 'pending' AND attempts > 0 THEN 'failed' ELSE status END AS outcome,
       count(*) AS n
FROM webhook_deliveries
GROUP BY 1

-- name: gauge_jobs
SELECT status, count(*) AS n FROM jobs GROUP BY status

-- name: gauge_claimable
-- Queued jobs a worker could claim now (whatever its capabilities): due, not cancelling, their
-- project not paused.
SELECT count(*)
FROM jobs j
JOIN projects p ON p.project_id = j.project_id
WHERE j.status = 'queued'
  AND NOT j.cancel_requested
  AND (j.not_before IS NULL OR j.not_before <= now())
  AND p.status <> 'paused'
