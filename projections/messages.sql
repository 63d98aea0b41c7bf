-- Named blocks of the `messages` projection: `{project_messages}` holds each project's
-- discussion, numbered densely per project (`seq`) in posting order.

-- name: posted
INSERT INTO {project_messages} (message_id, project_id, seq, role, author, content, at)
SELECT $1, $2, coalesce(max(seq), 0) + 1, $3, $4, $5, $6
FROM {project_messages} WHERE project_id = $2
ON CONFLICT (message_id) DO NOTHING

-- name: page
SELECT message_id, project_id, seq, role, author, content, at FROM {project_messages}
WHERE project_id = $1 AND ($2::text IS NULL OR role = $2)
ORDER BY seq
LIMIT $3 OFFSET $4

-- name: count
SELECT count(*) FROM {project_messages}
WHERE project_id = $1 AND ($2::text IS NULL OR role = $2)
