-- Named SQL for the event store. Blocks start with `-- name: <name>`; sql.py loads them once
-- and splices the fragments (the `audit_columns`, `audit_filters` and `audit_viewer` blocks)
-- into the queries that name them in braces.

-- name: append
-- Every INSERT of an unpositioned event reads `helix_append_lock()` in its FROM list: the
-- function takes the shared append lock before the statement's first row, so before this
-- transaction's id is assigned (by the row, its transaction_id default or its identity), and
-- the sequencer's horizon sees the transaction from then on (sequencer.py).
--
-- One statement. With an expected version ($9) the new rows are numbered on from it and go in
-- only if the stream is there: version $9 exists (or $9 is 0, a new stream). If the stream is
-- past $9, the row numbered $9 + 1 is already there and the unique (stream_id, version) index
-- refuses the insert; if it is still short of $9 nothing is inserted. Two writers of one stream
-- both write $9 + 1; the index makes the second wait for the first and then fail. The store
-- reports each case as a ConcurrencyError.
INSERT INTO events (event_id, stream_id, stream_type, version, project_id, type, schema_version,
                    data, metadata)
SELECT e.event_id, $1, $2, $9 + e.n, $3, e.type, e.schema_version, e.data, $8
FROM (SELECT helix_append_lock() OFFSET 0) AS held,
     unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[])
         WITH ORDINALITY AS e(event_id, type, schema_version, data, n)
WHERE $9 = 0 OR EXISTS (SELECT FROM events WHERE stream_id = $1 AND version = $9)
ORDER BY e.n
RETURNING version, recorded_at

-- name: append_one
-- The same for the common case of one event, without arrays.
INSERT INTO events (event_id, stream_id, stream_type, version, project_id, type, schema_version,
                    data, metadata)
SELECT $4, $1, $2, $9 + 1, $3, $5, $6, $7, $8
FROM (SELECT helix_append_lock() OFFSET 0) AS held
WHERE $9 = 0 OR EXISTS (SELECT FROM events WHERE stream_id = $1 AND version = $9)
RETURNING version, recorded_at

-- name: append_any
-- Without an expected version: numbered on from the stream's current version, under the
-- stream's lock (lock_stream) so that such writers do not race each other.
WITH stream AS (
    SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1
)
INSERT INTO events (event_id, stream_id, stream_type, version, project_id, type, schema_version,
                    data, metadata)
SELECT e.event_id, $1, $2, stream.version + e.n, $3, e.type, e.schema_version, e.data, $8
FROM (SELECT helix_append_lock() OFFSET 0) AS held,
     stream,
     unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[])
         WITH ORDINALITY AS e(event_id, type, schema_version, data, n)
ORDER BY e.n
RETURNING version, recorded_at

-- name: begin_appending
-- For a transaction that appends after writing something else (an idempotency record, say):
-- the append lock, taken before anything gives the transaction an id.
SELECT helix_append_lock()

-- name: lock_stream
SELECT pg_advisory_xact_lock(hashtextextended('helix.stream:' || $1, 0))

-- name: stream_version
SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1

-- name: read_stream
SELECT {read_columns}
FROM events
WHERE stream_id = $1 AND version > $2
ORDER BY version

-- name: read_all
-- Every read of events selects `{read_columns}`: the stored columns (`QUERIES`), or the
-- columns the streams filter on and the event's public JSON text (`PUBLIC_QUERIES`).
-- Sequenced events after a position, unfiltered: a range of the position index, in order.
-- The filtered reads below each have a query of their own, with no `$n IS NULL OR ...`
-- alternatives: a plan PostgreSQL caches for such a statement cannot use the index the filter
-- needs, and falls back to scanning and sorting the whole log for every page.
SELECT {read_columns}
FROM events
WHERE position > $1
ORDER BY position
LIMIT $2

-- name: read_all_stream
-- One stream's sequenced events after a position, optionally of some types ($4) and of one
-- project ($5).
SELECT {read_columns}
FROM events
WHERE stream_id = $3
  AND position > $1
  AND ($4::text[] IS NULL OR type LIKE ANY ($4))
  AND ($5::uuid IS NULL OR project_id = $5)
ORDER BY position
LIMIT $2

-- name: read_all_project
-- One project's sequenced events after a position through (project_id, position), optionally
-- of some types ($4).
SELECT {read_columns}
FROM events
WHERE project_id = $3
  AND position > $1
  AND ($4::text[] IS NULL OR type LIKE ANY ($4))
ORDER BY position
LIMIT $2

-- name: read_window
-- Sequenced events of some types ($4) in the positions ($1, $3]. No index leads to a type, so
-- the store reads the log in bounded stretches of the position index (`read_windows`): each
-- query's work is bounded by its stretch, not by the size of the log.
SELECT {read_columns}
FROM events
WHERE position > $1
  AND position <= $3
  AND type LIKE ANY ($4)
ORDER BY position
LIMIT $2

-- name: head
SELECT head_position FROM sequencer_state WHERE id = 1

-- name: wake_sequencer
-- $1: the channels to wake, the sequencer's (helix_appended) and any others due.
SELECT pg_notify(channel, '') FROM unnest($1::text[]) AS channel

-- name: try_lead
SELECT pg_try_advisory_lock($1)

-- name: sequencer_session
-- Every statement of the sequencer reaches a batch of rows through an index, however large the
-- log. Its prepared statements keep the plan made when they were first run, and a plan made
-- while `events` looked empty (a fresh database, not analyzed yet) joins the batch to the log
-- by scanning the whole table, every batch, until the statistics catch up. So that plan is
-- never an option on this connection.
SET enable_seqscan = off;
SET enable_hashjoin = off;
SET enable_mergejoin = off

-- name: load_head
SELECT head_position, head_hash FROM sequencer_state WHERE id = 1

-- name: oldest_appender
-- (A fragment.) The oldest transaction that holds the append lock in this database and has an
-- id older than this statement's snapshot's xmax, with who it is. Its id comes from
-- pg_stat_activity (the backend's own, published when it is assigned, before the transaction
-- can write anything), or for a prepared transaction, which has no backend, from its lock on
-- its own id. Advisory locks belong to a database, so Helix in another database of the server
-- holds its own; a transaction that does not append holds none. An id is matched by its 32
-- bits against the snapshot's running ids: they lie within 2^31 of each other.
WITH locks AS MATERIALIZED (
    SELECT locktype, pid, virtualtransaction, transactionid, mode, granted, classid, objid,
           objsubid, database
    FROM pg_locks
    WHERE locktype IN ('advisory', 'transactionid')
), holders AS (
    SELECT coalesce(a.backend_xid, own.transactionid) AS xid, l.pid,
           coalesce(a.application_name, 'prepared transaction ' || p.gid) AS application_name,
           coalesce(a.xact_start, p.prepared) AS started
    FROM locks l
    LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    LEFT JOIN locks own ON l.pid IS NULL AND own.locktype = 'transactionid'
                       AND own.virtualtransaction = l.virtualtransaction
                       AND own.mode = 'ExclusiveLock'
    LEFT JOIN pg_prepared_xacts p ON l.pid IS NULL AND p.transaction = own.transactionid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid::bigint = {append_lock_classid} AND l.objid::bigint = {append_lock_objid}
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT running AS xid, h.pid, h.application_name,
       extract(epoch FROM clock_timestamp() - h.started)::float8 AS age
FROM pg_snapshot_xip(pg_current_snapshot()) AS running
JOIN holders h ON h.xid = running::xid
ORDER BY running
LIMIT 1

-- name: horizon
-- The sequencer's horizon (the argument is in sequencer.py): the oldest running append
-- transaction's id, or with none the snapshot's xmax; and that transaction, if any.
WITH oldest AS ({oldest_appender})
SELECT coalesce((SELECT xid FROM oldest), pg_snapshot_xmax(pg_current_snapshot())) AS horizon,
       pg_snapshot_xmin(pg_current_snapshot()) AS xmin,
       o.xid, o.pid, o.application_name, o.age
FROM (SELECT) AS one
LEFT JOIN oldest o ON true

-- name: blocked_by
-- The append transaction that committed events without a position wait for: the oldest one
-- running, if an event younger than it waits.
WITH oldest AS ({oldest_appender})
SELECT o.xid, o.pid, o.application_name, o.age
FROM oldest o
WHERE EXISTS (
    SELECT 1 FROM events WHERE position IS NULL AND transaction_id > o.xid
)

-- name: next_committed
-- The ordering argument is in sequencer.py. The horizon is $3, the append transactions'
-- horizon read by a statement before this one, or when $3 is NULL the xmin of this statement's
-- own snapshot; rows below it that this snapshot does not show will never commit. Every row
-- returned carries the horizon used. $2 is the sequencer's lower bound: no committed row below
-- it is still without a position, so the scan starts there instead of stepping over the index
-- entries that positioned rows leave behind until VACUUM.
-- after_positioned: the row's predecessor in its stream has a position (or there is none);
-- `streams` holds each stream's highest positioned version. With no eligible rows the one row
-- returned carries only the horizon and `waiting` (committed rows held back by a running
-- transaction).
WITH eligible AS (
    SELECT id, event_id, stream_id, stream_type, version, project_id, type, schema_version,
           data, metadata, recorded_at, transaction_id
    FROM events
    WHERE position IS NULL
      AND transaction_id >= $2::xid8
      AND transaction_id < coalesce($3::xid8, pg_snapshot_xmin(pg_current_snapshot()))
    ORDER BY transaction_id, id
    LIMIT $1
)
SELECT e.*,
       e.version <= 1 + coalesce(
           (SELECT s.version FROM streams s WHERE s.stream_id = e.stream_id), 0
       ) AS after_positioned,
       coalesce($3::xid8, pg_snapshot_xmin(pg_current_snapshot())) AS horizon,
       e.event_id IS NULL AND EXISTS (
           SELECT 1 FROM events w
           WHERE w.position IS NULL
             AND w.transaction_id >= coalesce($3::xid8, pg_snapshot_xmin(pg_current_snapshot()))
           ORDER BY w.transaction_id
           LIMIT 1
       ) AS waiting
FROM (SELECT) AS one
LEFT JOIN eligible e ON true
ORDER BY e.transaction_id, e.id

-- name: write_batch
-- One statement, so one implicit transaction, for the whole batch. It moves the head from $8
-- to $9 only if the head is still at $8 (compare-and-set: a second leader, or an import, that
-- moved it makes this one write nothing), and positions the rows only if the head moved.
-- `streams` lists every stream with its highest positioned version; the sequencer keeps it,
-- so appends write nothing but their events. No row back: the head had moved.
WITH advanced AS (
    UPDATE sequencer_state
    SET head_position = $9, head_hash = $10, leader = $11, updated_at = now()
    WHERE id = 1 AND head_position = $8
    RETURNING 1
), positioned AS (
    UPDATE events AS e
    SET position = u.position, hash = u.hash
    FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS u(event_id, position, hash)
    WHERE e.event_id = u.event_id AND EXISTS (SELECT FROM advanced)
    RETURNING 1
), recorded AS (
    INSERT INTO streams AS s (stream_id, stream_type, project_id, version)
    SELECT * FROM unnest($4::text[], $5::text[], $6::uuid[], $7::int[])
    WHERE EXISTS (SELECT FROM advanced)
    ON CONFLICT (stream_id)
        DO UPDATE SET version = greatest(s.version, excluded.version), updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM positioned) AS positioned,
       (SELECT count(*) FROM recorded) AS recorded,
       pg_notify('helix_head', $9::text)
FROM advanced

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

-- Audit and replay (helix.audit): the audit log's filtered reads, time travel, export, import.

-- name: audit_columns
-- (A fragment, spliced into the audit queries by sql.py.) What an audit read returns; `hash` is
-- for exports.
position, event_id, stream_id, stream_type, version, project_id, type, schema_version, data,
metadata, recorded_at, hash

-- name: audit_filters
-- (A fragment.) The audit log's filters that no index serves; NULL parameters filter nothing.
-- $4 are type patterns, $5 the metadata actor, [$6, $7) the recorded_at range.
($4::text[] IS NULL OR type LIKE ANY ($4))
AND ($5::text IS NULL OR metadata ->> 'actor' = $5)
AND ($6::timestamptz IS NULL OR recorded_at >= $6)
AND ($7::timestamptz IS NULL OR recorded_at < $7)

-- `{audit_viewer}` (spliced in by sql.py from helix.access) keeps the events that the viewer
-- in $8 may see; $8 NULL is a viewer who sees everything.

-- name: audit_events
-- Sequenced events in the positions ($1, $3], filtered. No index leads to these filters, so
-- helix.audit reads the log through this query in bounded stretches of positions
-- (`read_windows`); the queries below serve the filters that have an index.
SELECT {audit_columns}
FROM events
WHERE position > $1
  AND position <= $3
  AND {audit_filters}
  AND {audit_viewer}
ORDER BY position
LIMIT $2

-- name: audit_events_stream
-- The same for one stream ($9), optionally of one project ($10), through the stream's index;
-- $3, when set, caps the position (an export's head at its start).
SELECT {audit_columns}
FROM events
WHERE stream_id = $9
  AND position > $1
  AND ($3::bigint IS NULL OR position <= $3)
  AND ($10::uuid IS NULL OR project_id = $10)
  AND {audit_filters}
  AND {audit_viewer}
ORDER BY position
LIMIT $2

-- name: audit_events_project
-- The same for one project ($9), through (project_id, position).
SELECT {audit_columns}
FROM events
WHERE project_id = $9
  AND position > $1
  AND ($3::bigint IS NULL OR position <= $3)
  AND {audit_filters}
  AND {audit_viewer}
ORDER BY position
LIMIT $2

-- name: audit_events_viewer
-- The events a user ($8) may see, with no stream or project filter: their own user stream and
-- the projects they own, each read through its own index (at most $2 rows from each), merged
-- in position order. In a log shared by many users a user's events are sparse, and a scan of
-- the log in position order would read everyone's to find them. $3, when set, caps the
-- position.
WITH mine AS (
    (SELECT {audit_columns}
     FROM events
     WHERE stream_id = {audit_viewer_stream}
       AND position > $1
       AND ($3::bigint IS NULL OR position <= $3)
       AND {audit_filters}
     ORDER BY position
     LIMIT $2)
    UNION ALL
    (SELECT e.*
     FROM ({audit_viewer_projects}) p
     CROSS JOIN LATERAL (
         SELECT {audit_columns}
         FROM events
         WHERE project_id = p.project_id
           AND position > $1
           AND ($3::bigint IS NULL OR position <= $3)
           AND stream_id <> {audit_viewer_stream}
           AND {audit_filters}
         ORDER BY position
         LIMIT $2
     ) e)
)
SELECT * FROM mine
ORDER BY position
LIMIT $2

-- name: audit_event_at
-- One sequenced event, if the viewer ($2, NULL: anyone) may see it.
SELECT position, event_id, stream_id, stream_type, version, project_id, type, schema_version,
       data, metadata, recorded_at, hash
FROM events
WHERE position = $1
  AND {event_at_viewer}

-- name: stream_up_to_position
-- Time travel: a stream's sequenced events up to a log position, in version order.
SELECT {read_columns}
FROM events
WHERE stream_id = $1 AND position IS NOT NULL AND position <= $2
ORDER BY version

-- name: stream_up_to_time
-- Time travel: a stream's sequenced events recorded at or before an instant, in version order.
SELECT {read_columns}
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
