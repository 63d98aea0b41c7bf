-- Named blocks of the `phases` projection: one `{job_phases}` row per phase of each job's plan.
-- Every block that changes a phase sets `version` (the job stream's version of the event;
-- the highest among a job's phases is the last event applied to it) with the job id in $1.

-- name: planned
INSERT INTO {job_phases} (job_id, ordinal, name, command, timeout_s, capabilities, env, status,
                          started_at, finished_at, output_lines, files, cost_tokens, cost_usd,
                          exit_code, error, skip_reason, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', NULL, NULL, 0, '[]'::jsonb, 0, 0, NULL, NULL, NULL,
        $8)
ON CONFLICT DO NOTHING

-- name: started
-- A run begins: the resources it reports are its own.
UPDATE {job_phases}
SET status = 'running', started_at = $4, finished_at = NULL, cpu_s = NULL, max_rss_bytes = NULL,
    read_bytes = NULL, write_bytes = NULL, version = $3
WHERE job_id = $1 AND name = $2

-- name: output
UPDATE {job_phases} SET output_lines = output_lines + $4, version = $3
WHERE job_id = $1 AND name = $2

-- name: file
-- A file written again replaces its earlier record, keeping its place; a new one goes last.
UPDATE {job_phases}
SET files = CASE
        WHEN files @> jsonb_build_array(jsonb_build_object('path', $4::jsonb -> 'path'))
        THEN (SELECT jsonb_agg(CASE WHEN f.value -> 'path' = $4::jsonb -> 'path' THEN $4::jsonb
                                    ELSE f.value END ORDER BY f.n)
              FROM jsonb_array_elements(files) WITH ORDINALITY AS f(value, n))
        ELSE files || jsonb_build_array($4::jsonb)
    END,
    version = $3
WHERE job_id = $1 AND name = $2

-- name: cost
UPDATE {job_phases} SET cost_tokens = cost_tokens + $4, cost_usd = cost_usd + $5, version = $3
WHERE job_id = $1 AND name = $2

-- name: resources
-- The run's figures so far replace the previous report's.
UPDATE {job_phases}
SET cpu_s = $4, max_rss_bytes = $5, read_bytes = $6, write_bytes = $7, version = $3
WHERE job_id = $1 AND name = $2

-- name: completed
UPDATE {job_phases} SET status = 'completed', finished_at = $4, exit_code = $5, version = $3
WHERE job_id = $1 AND name = $2

-- name: failed
UPDATE {job_phases}
SET status = 'failed', finished_at = $4, exit_code = $5, error = $6, version = $3
WHERE job_id = $1 AND name = $2

-- name: skipped
UPDATE {job_phases} SET status = 'skipped', finished_at = $4, skip_reason = $5, version = $3
WHERE job_id = $1 AND name = $2

-- name: retry_scheduled
-- A lost attempt, or a pause that stopped it, puts the running phase back to pending (its
-- output, files and cost stay). The first phase takes the version too, so that the event is
-- recorded as applied even when no phase was running.
UPDATE {job_phases}
SET status = CASE WHEN status = 'running' THEN 'pending' ELSE status END,
    started_at = CASE WHEN status = 'running' THEN NULL ELSE started_at END,
    version = $2
WHERE job_id = $1 AND (status = 'running' OR ordinal = 1)

-- name: requeued
-- The phases its failure left undone ($3) are pending again (their output, files and cost
-- stay); the first phase takes the version too, as for a retry.
UPDATE {job_phases}
SET status = CASE WHEN name = ANY ($3::text[]) THEN 'pending' ELSE status END,
    started_at = CASE WHEN name = ANY ($3::text[]) THEN NULL ELSE started_at END,
    finished_at = CASE WHEN name = ANY ($3::text[]) THEN NULL ELSE finished_at END,
    exit_code = CASE WHEN name = ANY ($3::text[]) THEN NULL ELSE exit_code END,
    error = CASE WHEN name = ANY ($3::text[]) THEN NULL ELSE error END,
    skip_reason = CASE WHEN name = ANY ($3::text[]) THEN NULL ELSE skip_reason END,
    version = $2
WHERE job_id = $1 AND (name = ANY ($3::text[]) OR ordinal = 1)

-- name: applied
-- The version each job in $1 reflects (see projections/seen.py).
SELECT k.id, (SELECT max(p.version) FROM {job_phases} p WHERE p.job_id = k.id) AS version
FROM unnest($1::uuid[]) AS k(id)

-- name: of_job
SELECT * FROM {job_phases} WHERE job_id = $1 ORDER BY ordinal
