-- Named blocks shared by the stream-folding projections (projections/seen.py). `{applied}` is
-- the projection's own `applied` block: for each key in the uuid[] $1, the version of the last
-- event the projection applied to that stream (`id`, `version`; NULL or no row: none).

-- name: check
-- $1 the stream's key (a one-element array), $2 its stream id, $3 the event's version, $4 the
-- projection's types: the version applied, and the committed events of those types between it
-- and the event. A runner meets a stream's events in version order (the sequencer positions
-- them so), but a writer that bypassed the inline projections leaves a gap for the next inline
-- apply to fill, in order.
WITH applied AS (
    SELECT coalesce((SELECT a.version FROM ({applied}) AS a), 0) AS version
)
SELECT applied.version AS applied, e.event_id, e.stream_id, e.stream_type, e.version,
       e.position, e.project_id, e.type, e.schema_version, e.data, e.metadata, e.recorded_at
FROM applied
LEFT JOIN LATERAL (
    SELECT event_id, stream_id, stream_type, version, position, project_id, type,
           schema_version, data, metadata, recorded_at
    FROM events
    WHERE stream_id = $2 AND version > applied.version AND version < $3
      AND type = ANY ($4::text[])
) AS e ON true
ORDER BY e.version

-- name: lock_stream
-- $1 the projection's physical table, $2 the stream: appliers of committed events of one
-- stream take turns (held to the end of the transaction; no row is written).
SELECT pg_advisory_xact_lock(hashtextextended('helix.projection:' || $1 || ':' || $2, 0))
