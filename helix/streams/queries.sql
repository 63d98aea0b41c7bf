-- Named SQL of the streams package (the log itself is read through the EventStore).

-- name: job_owner
-- $1 job id: the job's project and owner, for the job stream's visibility check.
SELECT project_id, owner FROM jobs WHERE job_id = $1

-- name: terminal_position
-- $1 stream id, $2 terminal types: where the job ended in the log, if it has.
SELECT position FROM events
WHERE stream_id = $1 AND type = ANY ($2::text[]) AND position IS NOT NULL
ORDER BY position
LIMIT 1

-- name: credentials
-- $1 user id, $2 API key id (NULL: none), $3 a JWT's jti (NULL: none): whether a stream's
-- credentials still hold. `key_found` is false for a key that is not the user's.
SELECT u.disabled, u.role, k.key_id IS NOT NULL AS key_found,
       k.revoked_at IS NOT NULL AS key_revoked, u.tokens_valid_after,
       EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.token_id = $3) AS token_revoked
FROM users u LEFT JOIN api_keys k ON k.key_id = $2 AND k.user_id = u.user_id
WHERE u.user_id = $1
