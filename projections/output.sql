-- Named blocks of the `output` projection: `{job_output_lines}` holds every output line of a
-- job, numbered densely per job (`seq`) in the order written, with its per-phase `line_no` and
-- the attempt (the job's claim) that wrote it, and the version of the job's stream that did.

-- name: lines
INSERT INTO {job_output_lines} (job_id, seq, phase, line_no, stream, line, at, attempt, version)
SELECT $1, base.seq + l.n, $2, $3 + l.n - 1, $4, l.line, $6, $7, $8
FROM (SELECT coalesce(max(seq), 0) AS seq FROM {job_output_lines} WHERE job_id = $1) AS base,
     unnest($5::text[]) WITH ORDINALITY AS l(line, n)

-- name: applied
-- The version each job in $1 reflects: its latest line's (see projections/seen.py).
SELECT k.id,
       (SELECT o.version FROM {job_output_lines} o
        WHERE o.job_id = k.id ORDER BY o.seq DESC LIMIT 1) AS version
FROM unnest($1::uuid[]) AS k(id)

-- name: page
-- $2 phase (NULL: every phase), lines with seq > $3, at most $4.
SELECT seq, phase, line_no, attempt, stream, line, at FROM {job_output_lines}
WHERE job_id = $1 AND ($2::text IS NULL OR phase = $2) AND seq > $3
ORDER BY seq
LIMIT $4

-- name: tail
SELECT * FROM (
    SELECT seq, phase, line_no, attempt, stream, line, at FROM {job_output_lines}
    WHERE job_id = $1 ORDER BY seq DESC LIMIT $2
) AS last ORDER BY seq

-- name: count
SELECT count(*) FROM {job_output_lines} WHERE job_id = $1 AND ($2::text IS NULL OR phase = $2)
