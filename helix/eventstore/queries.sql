-- Named SQL for the event store. Blocks start with `-- name: <name>`; sql.py loads them once.

-- name: append
-- One statement: the stream's current version, checked against the expected one ($9; -1 for
-- any), and the new rows numbered on from it. Two writers of one stream both compute the same
-- next version; the unique (stream_id, version) index makes the second wait for the first and
-- then fail, which the store reports as a ConcurrencyError.
WITH stream AS (
    SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1
)
INSERT INTO events (event_id, stream_id, stream_type, version, project_id, type, schema_version,
                    data, metadata)
SELECT e.event_id, $1, $2, stream.version + e.n, $3, e.type, e.schema_version, e.data, $8
FROM stream,
     unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[])
         WITH ORDINALITY AS e(event_id, type, schema_version, data, n)
WHERE $9 = -1 OR stream.version = $9
ORDER BY e.n
RETURNING event_id, version, recorded_at

-- name: append_one
-- The same for the common case of one event, without arrays.
INSERT INTO events (event_id, stream_id, stream_type, version, project_id, type, schema_version,
                    data, metadata)
SELECT $4, $1, $2, stream.version + 1, $3, $5, $6, $7, $8
FROM (SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1) AS stream
WHERE $9 = -1 OR stream.version = $9
RETURNING event_id, version, recorded_at

-- name: lock_stream
SELECT pg_advisory_xact_lock(hashtextextended('helix.stream:' || $1, 0))

-- name: stream_version
SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1

-- name: read_stream
SELECT event_id, stream_id, stream_type, version, position, project_id, type, schema_version,
       data, metadata, recorded_at
FROM events
WHERE stream_id = $1 AND version > $2
ORDER BY version

-- name: read_all
SELECT event_id, stream_id, stream_type, version, position, project_id, type, schema_version,
       data, metadata, recorded_at
FROM events
WHERE position > $1
  AND ($3::text IS NULL OR stream_id = $3)
  AND ($4::uuid IS NULL OR project_id = $4)
  AND ($5::text[] IS NULL OR type LIKE ANY ($5))
ORDER BY position
LIMIT $2

-- name: head
SELECT head_position FROM sequencer_state WHERE id = 1

-- name: positions_of
SELECT event_id, position FROM events WHERE event_id = ANY ($1::uuid[])

-- name: wake_sequencer
SELECT pg_notify('helix_appended', '')

-- name: try_lead
SELECT pg_try_advisory_lock($1)

-- name: lock_head
SELECT head_position, head_hash FROM sequencer_state WHERE id = 1 FOR UPDATE

-- name: next_committed
-- The ordering argument is in sequencer.py. The rows and the snapshot's xmin come from one
-- statement, so both come from the same snapshot. after_positioned: the row's predecessor in
-- its stream already has a position (or there is none).
WITH eligible AS (
    SELECT id, event_id, stream_id, stream_type, version, project_id, type, schema_version,
           data, metadata, recorded_at, transaction_id
    FROM events
    WHERE position IS NULL
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, id
    LIMIT $1
)
SELECT e.*,
       e.version = 1 OR EXISTS (
           SELECT 1 FROM events p
           WHERE p.stream_id = e.stream_id AND p.version = e.version - 1
             AND p.position IS NOT NULL
       ) AS after_positioned
FROM eligible e
ORDER BY e.transaction_id, e.id

-- name: write_batch
-- One round trip for the batch's writes. `streams` lists every stream with its highest
-- positioned version; the sequencer keeps it, so appends write nothing but their events.
WITH positioned AS (
    UPDATE events AS e
    SET position = u.position, hash = u.hash
    FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS u(event_id, position, hash)
    WHERE e.event_id = u.event_id
    RETURNING 1
), recorded AS (
    INSERT INTO streams AS s (stream_id, stream_type, project_id, version)
    SELECT * FROM unnest($4::text[], $5::text[], $6::uuid[], $7::int[])
    ON CONFLICT (stream_id)
        DO UPDATE SET version = greatest(s.version, excluded.version), updated_at = now()
    RETURNING 1
), advanced AS (
    UPDATE sequencer_state
    SET head_position = $8, head_hash = $9, leader = $10, updated_at = now()
    WHERE id = 1
    RETURNING 1
)
SELECT pg_notify('helix_head', $8::text), (SELECT count(*) FROM positioned) AS positioned

-- name: sequencer_lag
SELECT coalesce(extract(epoch FROM clock_timestamp() - min(recorded_at)), 0)::float8 AS lag,
       count(*) AS pending
FROM events
WHERE position IS NULL

-- name: chain_page
SELECT position, event_id, stream_id, stream_type, version, project_id, type, schema_version,
       data, metadata, recorded_at, hash
FROM events
WHERE position > $1 AND position IS NOT NULL
ORDER BY position
LIMIT $2

-- name: chain_head
SELECT head_position, head_hash FROM sequencer_state WHERE id = 1

-- name: has_unsequenced
SELECT EXISTS (SELECT 1 FROM events WHERE position IS NULL)

-- Audit and replay (helix.audit): the audit log's filtered reads, time travel, export, import.

-- name: audit_events
-- Sequenced events after $1, filtered; NULL parameters filter nothing. $3 caps the position
-- (an export's head at its start), $7 is the metadata actor, [$8, $9) the recorded_at range.
-- $10, when set, is the viewing user: only events of projects they own or of their own user
-- stream. `hash` is for exports.
SELECT position, event_id, stream_id, stream_type, version, project_id, type, schema_version,
       data, metadata, recorded_at, hash
FROM events
WHERE position > $1
  AND ($3::bigint IS NULL OR position <= $3)
  AND ($4::text IS NULL OR stream_id = $4)
  AND ($5::uuid IS NULL OR project_id = $5)
  AND ($6::text[] IS NULL OR type LIKE ANY ($6))
  AND ($7::text IS NULL OR metadata ->> 'actor' = $7)
  AND ($8::timestamptz IS NULL OR recorded_at >= $8)
  AND ($9::timestamptz IS NULL OR recorded_at < $9)
  AND ($10::text IS NULL OR stream_id = 'user-' || $10
       OR project_id IN (SELECT project_id FROM projects WHERE owner = $10))
ORDER BY position
LIMIT $2

-- name: audit_event_at
-- One sequenced event, if the viewer ($2, NULL: anyone) may see it.
SELECT position, event_id, stream_id, stream_type, version, project_id, type, schema_version,
       data, metadata, recorded_at, hash
FROM events
WHERE position = $1
  AND ($2::text IS NULL OR stream_id = 'user-' || $2
       OR project_id IN (SELECT project_id FROM projects WHERE owner = $2))

-- name: stream_up_to_position
-- Time travel: a stream's sequenced events up to a log position, in version order.
SELECT event_id, stream_id, stream_type, version, position, project_id, type, schema_version,
       data, metadata, recorded_at
FROM events
WHERE stream_id = $1 AND position IS NOT NULL AND position <= $2
ORDER BY version

-- name: stream_up_to_time
-- Time travel: a stream's sequenced events recorded at or before an instant, in version order.
SELECT event_id, stream_id, stream_type, version, position, project_id, type, schema_version,
       data, metadata, recorded_at
FROM events
WHERE stream_id = $1 AND position IS NOT NULL AND recorded_at <= $2
ORDER BY version

-- name: import_lock
-- An import holds off every writer (readers go on) until it commits.
LOCK TABLE events, streams, sequencer_state IN EXCLUSIVE MODE

-- name: import_store_is_empty
SELECT NOT EXISTS (SELECT 1 FROM events)

-- name: import_events
-- Rows that arrive already positioned and hashed: the sequencer never touches them.
INSERT INTO events (event_id, stream_id, stream_type, version, project_id, type, schema_version,
                    data, metadata, recorded_at, position, hash)
SELECT *
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::uuid[], $6::text[], $7::int[],
            $8::jsonb[], $9::jsonb[], $10::timestamptz[], $11::bigint[], $12::bytea[])

-- name: import_streams
-- Every stream at its highest version, as the sequencer would have recorded it.
INSERT INTO streams AS s (stream_id, stream_type, project_id, version)
SELECT DISTINCT ON (stream_id) stream_id, stream_type, project_id, version
FROM events
ORDER BY stream_id, version DESC
ON CONFLICT (stream_id) DO UPDATE
    SET stream_type = excluded.stream_type, project_id = excluded.project_id,
        version = excluded.version, updated_at = now()

-- name: import_head
WITH advanced AS (
    UPDATE sequencer_state
    SET head_position = $1, head_hash = $2, updated_at = now()
    WHERE id = 1
    RETURNING 1
)
SELECT pg_notify('helix_head', $1::text), (SELECT count(*) FROM advanced) AS updated
