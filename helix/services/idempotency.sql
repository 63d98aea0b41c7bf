-- name: find
-- The committed record of a key, if one is live (a row with no status is left from an older
-- release, when keys were reserved outside the command's transaction: it holds nothing).
SELECT fingerprint, status, headers, body FROM idempotency_keys
WHERE scope = $1 AND key = $2 AND status IS NOT NULL
  AND created_at >= now() - make_interval(secs => $3)

-- name: reserve
-- Inside the command's transaction. A concurrent request with the same key waits here on the
-- primary key until the first one's transaction ends: a commit leaves its record (no row comes
-- back), a rollback leaves nothing and this insert goes ahead. An expired record is taken over.
INSERT INTO idempotency_keys (scope, key, fingerprint) VALUES ($1, $2, $3)
ON CONFLICT (scope, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, status = NULL, headers = NULL, body = NULL,
    created_at = now(), completed_at = NULL
WHERE idempotency_keys.status IS NULL
   OR idempotency_keys.created_at < now() - make_interval(secs => $4)
RETURNING true

-- name: release
DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2

-- name: complete
UPDATE idempotency_keys SET status = $3, headers = $4, body = $5, completed_at = now()
WHERE scope = $1 AND key = $2

-- name: store
-- For a request whose writes did not go through the unit of work: its record is written after
-- them, in a statement of its own.
INSERT INTO idempotency_keys (scope, key, fingerprint, status, headers, body, completed_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (scope, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, headers = EXCLUDED.headers,
    body = EXCLUDED.body, created_at = now(), completed_at = now()
WHERE idempotency_keys.status IS NULL
   OR idempotency_keys.created_at < now() - make_interval(secs => $7)
RETURNING true

-- name: purge
DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)
