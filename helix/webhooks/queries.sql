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

-- name: endpoints_succeeded
-- $1 the endpoints that answered 2xx, sorted (rows locked in one order, so batches of several
-- workers never deadlock). Skipped while an endpoint is healthy and was marked so recently: a
-- busy endpoint's row is not rewritten (and locked) by every batch.
INSERT INTO webhook_health AS h (endpoint_id, last_success_at)
SELECT e, now() FROM unnest($1::uuid[]) AS e ORDER BY e
ON CONFLICT (endpoint_id) DO UPDATE
SET last_success_at = now(), failing_since = NULL
WHERE h.failing_since IS NOT NULL OR h.last_success_at IS NULL
      OR h.last_success_at < now() - interval '1 second'

-- name: endpoints_failed
-- $1 endpoints (sorted) whose last attempt of a batch failed, $2 when each one's first failure
-- since its last success started, $3 the disable period in seconds. `expired`: the endpoint has
-- failed without a success for the whole period and should be disabled.
INSERT INTO webhook_health AS h (endpoint_id, failing_since, last_failure_at)
SELECT e, s, now() FROM unnest($1::uuid[], $2::timestamptz[]) AS f(e, s) ORDER BY e
ON CONFLICT (endpoint_id) DO UPDATE
SET failing_since = coalesce(h.failing_since, excluded.failing_since), last_failure_at = now()
RETURNING endpoint_id, now() - failing_since >= make_interval(secs => $3) AS expired

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
-- A batch of attempts, one per delivery: each outcome is recorded only if its claim token still
-- holds the delivery (a worker whose lease ran out changes nothing), and the attempt rows are
-- written in the same statement. $1 deliveries, $2 their claim tokens, $3 new statuses, $4
-- seconds until the next attempt (NULL: none), $5 status codes, $6 errors, $7 when each attempt
-- started, $8 durations, $9 error classes, $10 response bodies, $11 whether each was truncated.
WITH outcome AS (
    SELECT *
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::int[], $6::text[],
                $7::timestamptz[], $8::float8[], $9::text[], $10::text[], $11::bool[])
         AS o(delivery_id, token, status, delay, status_code, error, started_at, duration_ms,
              error_class, response_body, response_truncated)
), finished AS (
    UPDATE webhook_deliveries d
    SET attempts = d.attempts + 1, status = o.status,
        next_attempt_at = now() + make_interval(secs => o.delay), locked_until = NULL,
        locked_by = NULL, last_status_code = o.status_code, last_error = o.error,
        updated_at = now(),
        delivered_at = CASE WHEN o.status = 'succeeded' THEN now() END,
        dead_at = CASE WHEN o.status = 'dead' THEN now() END
    FROM outcome o
    WHERE d.delivery_id = o.delivery_id AND d.locked_by = o.token
    RETURNING d.delivery_id, d.attempts, d.endpoint_id, d.next_attempt_at
), attempts AS (
    INSERT INTO webhook_attempts (delivery_id, attempt, endpoint_id, started_at, duration_ms,
                                  status_code, error_class, error, response_body,
                                  response_truncated, next_attempt_at)
    SELECT f.delivery_id, f.attempts, f.endpoint_id, o.started_at, o.duration_ms,
           o.status_code, o.error_class, o.error, o.response_body, o.response_truncated,
           f.next_attempt_at
    FROM finished f JOIN outcome o USING (delivery_id)
)
SELECT delivery_id FROM finished

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
