-- Named SQL of the webhooks package. Blocks start with `-- name: <name>`. `{visible}` (which
-- events an endpoint's owner may see) and `{owned}` (which endpoints a viewer may list) are the
-- one rule of helix/access.py, spliced in by helix/webhooks/sql.py.

-- name: endpoint_get
-- An endpoint (the `webhooks` projection) with its delivery health.
SELECT w.*, h.failing_since, h.last_success_at
FROM webhook_endpoints w LEFT JOIN webhook_health h USING (endpoint_id)
WHERE w.endpoint_id = $1 AND w.deleted_at IS NULL

-- name: endpoint_list
-- $1 owner (NULL: everyone's).
SELECT w.*, h.failing_since, h.last_success_at
FROM webhook_endpoints w LEFT JOIN webhook_health h USING (endpoint_id)
WHERE w.deleted_at IS NULL AND {owned}
ORDER BY w.created_at DESC, w.endpoint_id
LIMIT $2 OFFSET $3

-- name: endpoint_count
SELECT count(*) FROM webhook_endpoints w WHERE w.deleted_at IS NULL AND {owned}

-- name: head
SELECT head_position FROM sequencer_state WHERE id = 1

-- name: secret_insert
INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)

-- name: secret_rotate
-- The current secret becomes the previous one, which signs beside the new one until the
-- endpoint's `previous_secret_until`.
UPDATE webhook_secrets SET previous_secret = secret, secret = $2 WHERE endpoint_id = $1

-- name: secret_delete
DELETE FROM webhook_secrets WHERE endpoint_id = $1

-- name: health_reset
-- Enabling starts the failure clock afresh, so an endpoint is not disabled again at once.
UPDATE webhook_health SET failing_since = NULL WHERE endpoint_id = $1

-- name: endpoint_succeeded
-- Skipped while the endpoint is healthy and was marked so recently: a busy endpoint's row is
-- not rewritten (and locked) by every delivery.
INSERT INTO webhook_health AS h (endpoint_id, last_success_at) VALUES ($1, now())
ON CONFLICT (endpoint_id) DO UPDATE
SET last_success_at = now(), failing_since = NULL
WHERE h.failing_since IS NOT NULL OR h.last_success_at IS NULL
      OR h.last_success_at < now() - interval '1 second'

-- name: endpoint_failed
-- $2 when the failed attempt started, $3 the disable period in seconds. `expired`: the endpoint
-- has failed without a success for the whole period and should be disabled.
INSERT INTO webhook_health AS h (endpoint_id, failing_since, last_failure_at)
VALUES ($1, $2, now())
ON CONFLICT (endpoint_id) DO UPDATE
SET failing_since = coalesce(h.failing_since, $2), last_failure_at = now()
RETURNING now() - failing_since >= make_interval(secs => $3) AS expired

-- name: lock_checkpoint
SELECT position FROM webhook_dispatcher WHERE id = 1 FOR UPDATE

-- name: save_checkpoint
UPDATE webhook_dispatcher SET position = $1, updated_at = now() WHERE id = 1

-- name: dispatch
-- $1 the checkpoint, $2 the batch size. Positions are dense and final, so the batch is exactly
-- the next $2 events; the caller holds the checkpoint row, and the unique index makes a second
-- insert of the same (endpoint, event) a no-op whatever happens.
WITH batch AS (
    SELECT event_id, stream_id, stream_type, project_id, type, position
    FROM events
    WHERE position > $1 AND position <= $1 + $2
), inserted AS (
    INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, position, event_type, kind,
                                    status, next_attempt_at, created_at, updated_at)
    SELECT gen_random_uuid(), w.endpoint_id, ev.event_id, ev.position, ev.type, 'log',
           'pending', now(), now(), now()
    FROM batch ev
    JOIN webhook_endpoints w
      ON w.enabled AND w.deleted_at IS NULL AND ev.position > w.after_position
         AND ev.type LIKE ANY (w.type_patterns)
    JOIN users u ON u.user_id = w.owner AND NOT u.disabled
    WHERE {visible}
    ORDER BY ev.position
    ON CONFLICT (endpoint_id, event_id) WHERE kind = 'log' DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT max(position) FROM batch) AS last_position

-- name: claim
-- Due deliveries of enabled endpoints, leased to this claim ($3) until now() + $2 seconds. The
-- statement commits on its own: the HTTP call happens after it, never in a transaction. A lease
-- that runs out (its worker died) makes the delivery claimable again.
WITH due AS (
    SELECT d.delivery_id
    FROM webhook_deliveries d
    JOIN webhook_endpoints w ON w.endpoint_id = d.endpoint_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND (d.locked_until IS NULL OR d.locked_until < now())
      AND w.enabled AND w.deleted_at IS NULL
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE webhook_deliveries d
    SET locked_until = now() + make_interval(secs => $2), locked_by = $3
    FROM due
    WHERE d.delivery_id = due.delivery_id
    RETURNING d.*
)
SELECT c.delivery_id, c.endpoint_id, c.event_id, c.kind, c.payload, c.attempts, c.event_type,
       w.url, s.secret, s.previous_secret, w.previous_secret_until,
       e.position, e.recorded_at, e.stream_id, e.stream_type, e.version, e.project_id, e.type,
       e.schema_version, e.data, e.metadata, now() AS claimed_at
FROM claimed c
JOIN webhook_endpoints w ON w.endpoint_id = c.endpoint_id
JOIN webhook_secrets s ON s.endpoint_id = c.endpoint_id
LEFT JOIN events e ON e.event_id = c.event_id

-- name: finish
-- Fenced by the claim token ($2): a worker whose lease ran out changes nothing.
-- $4: seconds until the next attempt (NULL: none).
UPDATE webhook_deliveries
SET attempts = attempts + 1, status = $3,
    next_attempt_at = now() + make_interval(secs => $4::float8), locked_until = NULL,
    locked_by = NULL, last_status_code = $5, last_error = $6, updated_at = now(),
    delivered_at = CASE WHEN $3 = 'succeeded' THEN now() END,
    dead_at = CASE WHEN $3 = 'dead' THEN now() END
WHERE delivery_id = $1 AND locked_by = $2
RETURNING attempts, next_attempt_at

-- name: attempt_insert
INSERT INTO webhook_attempts (delivery_id, attempt, endpoint_id, started_at, duration_ms,
                              status_code, error_class, error, response_body,
                              response_truncated, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)

-- name: release
-- On shutdown: this worker's claims become claimable again at once.
UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL
WHERE locked_by = ANY ($1::uuid[])

-- name: replay
-- $1 endpoint, positions $2..$3 (inclusive), $4 recorded at or after (or NULL), $5 LIKE
-- patterns further narrowing the endpoint's own (or NULL), $6 at most this many.
INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, position, event_type, kind,
                                status, next_attempt_at, created_at, updated_at)
SELECT gen_random_uuid(), w.endpoint_id, ev.event_id, ev.position, ev.type, 'replay',
       'pending', now(), now(), now()
FROM webhook_endpoints w
JOIN users u ON u.user_id = w.owner
JOIN events ev ON ev.position >= $2 AND ev.position <= $3
WHERE w.endpoint_id = $1
  AND ($4::timestamptz IS NULL OR ev.recorded_at >= $4)
  AND ev.type LIKE ANY (w.type_patterns)
  AND ($5::text[] IS NULL OR ev.type LIKE ANY ($5))
  AND {visible}
ORDER BY ev.position
LIMIT $6
RETURNING position

-- name: retry
INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, position, event_type, kind,
                                replay_of, payload, status, next_attempt_at, created_at,
                                updated_at)
SELECT gen_random_uuid(), endpoint_id, event_id, position, event_type, 'retry', delivery_id,
       payload, 'pending', now(), now(), now()
FROM webhook_deliveries
WHERE delivery_id = $1 AND endpoint_id = $2
RETURNING *

-- name: recover
-- Dead deliveries created in [$2, $3) whose (endpoint, event) never succeeded and is not
-- already pending again: one new delivery each.
INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, position, event_type, kind,
                                replay_of, payload, status, next_attempt_at, created_at,
                                updated_at)
SELECT gen_random_uuid(), d.endpoint_id, d.event_id, d.position, d.event_type, 'recover',
       d.delivery_id, d.payload, 'pending', now(), now(), now()
FROM (
    SELECT DISTINCT ON (event_id) *
    FROM webhook_deliveries
    WHERE endpoint_id = $1 AND status = 'dead' AND created_at >= $2
      AND ($3::timestamptz IS NULL OR created_at < $3)
    ORDER BY event_id, created_at DESC
) d
WHERE NOT EXISTS (
    SELECT 1 FROM webhook_deliveries s
    WHERE s.event_id = d.event_id AND s.endpoint_id = d.endpoint_id
      AND s.status IN ('succeeded', 'pending'))
RETURNING delivery_id

-- name: ping
INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_id, event_type, kind, payload,
                                status, next_attempt_at, created_at, updated_at)
VALUES ($1, $2, $3, 'webhook.ping', 'ping', $4, 'pending', now(), now(), now())
RETURNING *

-- name: delivery_list
SELECT * FROM webhook_deliveries
WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)
ORDER BY created_at DESC, delivery_id
LIMIT $3 OFFSET $4

-- name: delivery_count
SELECT count(*) FROM webhook_deliveries
WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)

-- name: delivery_get
SELECT * FROM webhook_deliveries WHERE delivery_id = $1 AND endpoint_id = $2

-- name: attempt_list
SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt

-- name: dispatched_position
-- The log position up to which the webhook dispatcher has made deliveries.
SELECT position FROM webhook_dispatcher WHERE id = 1
