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
