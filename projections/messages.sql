-- Named blocks of the `messages` projection: `{project_messages}` holds each project's
-- discussion, numbered densely per project (`seq`) in posting order, each message with the
-- version of the project's stream that posted it.

-- name: posted
INSERT INTO {project_messages} (message_id, project_id, seq, role, author, content, at, version)
SELECT $1, $2, coalesce(max(seq), 0) + 1, $3, $4, $5, $6, $7
FROM {project_messages} WHERE project_id = $2
ON CONFLICT (message_id) DO NOTHING

-- name: applied
-- The version each project in $1 reflects: its latest message's (see projections/seen.py).
SELECT k.id,
       (SELECT m.version FROM {project_messages} m
        WHERE m.project_id = k.id ORDER BY m.seq DESC LIMIT 1) AS version
FROM unnest($1::uuid[]) AS k(id)

-- name: page
SELECT message_id, project_id, seq, role, author, content, at FROM {project_messages}
WHERE project_id = $1 AND ($2::text IS NULL OR role = $2)
ORDER BY seq
LIMIT $3 OFFSET $4

-- name: count
SELECT count(*) FROM {project_messages}
WHERE project_id = $1 AND ($2::text IS NULL OR role = $2)
