-- Named blocks shared by the stream-folding projections. `{seen}` is the projection's
-- tracking table (live, or a fresh one during a rebuild).

-- name: lock_seen
-- The version this projection last applied for the stream (0: none), with the row locked so
-- that two appliers of one stream take turns.
INSERT INTO {seen} AS s (stream_id, version) VALUES ($1, 0)
ON CONFLICT (stream_id) DO UPDATE SET version = s.version
RETURNING version

-- name: set_seen
UPDATE {seen} SET version = $2 WHERE stream_id = $1

-- name: missed_events
-- Committed events of a stream between what was applied and the event at hand: the runner may
-- meet a stream's events out of version order (positions follow transaction ids), and a writer
-- that bypassed the inline projections leaves a gap. Either way the gap is filled in order.
SELECT event_id, stream_id, stream_type, version, position, project_id, type, schema_version,
       data, metadata, recorded_at
FROM events
WHERE stream_id = $1 AND version > $2 AND version < $3 AND type = ANY ($4::text[])
ORDER BY version
