-- Named blocks of the `phases` projection: one `{job_phases}` row per phase of each job's plan.

-- name: planned
INSERT INTO {job_phases} (job_id, ordinal, name, command, timeout_s, capabilities, env, status,
                          started_at, finished_at, output_lines, files, cost_tokens, cost_usd,
                          exit_code, error, skip_reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', NULL, NULL, 0, '[]'::jsonb, 0, 0, NULL, NULL, NULL)
ON CONFLICT DO NOTHING

-- name: started
UPDATE {job_phases} SET status = 'running', started_at = $3, finished_at = NULL
WHERE job_id = $1 AND name = $2

-- name: output
UPDATE {job_phases} SET output_lines = output_lines + $3 WHERE job_id = $1 AND name = $2

-- name: files
SELECT files FROM {job_phases} WHERE job_id = $1 AND name = $2

-- name: set_files
UPDATE {job_phases} SET files = $3 WHERE job_id = $1 AND name = $2

-- name: cost
UPDATE {job_phases} SET cost_tokens = cost_tokens + $3, cost_usd = cost_usd + $4
WHERE job_id = $1 AND name = $2

-- name: completed
UPDATE {job_phases} SET status = 'completed', finished_at = $3, exit_code = $4
WHERE job_id = $1 AND name = $2

-- name: failed
UPDATE {job_phases} SET status = 'failed', finished_at = $3, exit_code = $4, error = $5
WHERE job_id = $1 AND name = $2

-- name: skipped
UPDATE {job_phases} SET status = 'skipped', finished_at = $3, skip_reason = $4
WHERE job_id = $1 AND name = $2

-- name: retry_scheduled
-- A lost attempt, or a pause that stopped it, puts the running phase back to pending (its output, files and cost stay).
UPDATE {job_phases} SET status = 'pending', started_at = NULL
WHERE job_id = $1 AND status = 'running'

-- name: of_job
SELECT * FROM {job_phases} WHERE job_id = $1 ORDER BY ordinal
