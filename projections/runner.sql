-- Named blocks of the projection runner and of `helix projections rebuild`.

-- name: lock_checkpoint
-- The checkpoint row, created at position 0 on first use, locked for the batch: runners on
-- several nodes take turns and never apply a batch twice.
INSERT INTO projection_checkpoints AS c (name, version, position) VALUES ($1, $2, 0)
ON CONFLICT (name) DO UPDATE SET name = c.name
RETURNING version, position

-- name: save_checkpoint
INSERT INTO projection_checkpoints (name, version, position, updated_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (name) DO UPDATE
SET version = EXCLUDED.version, position = EXCLUDED.position, updated_at = now()

-- name: checkpoints
SELECT name, version, position, updated_at FROM projection_checkpoints

-- name: tail_events
-- Everything committed after the rebuild's last batch, sequenced or not yet: run while the live
-- tables are locked, so no inline writer can slip in between this read and the swap.
-- The two halves reach their own indexes (positions, and the unsequenced rows), where one
-- `position > $1 OR position IS NULL` would scan the whole log while the tables are locked.
SELECT event_id, stream_id, stream_type, version, position, project_id, type, schema_version,
       data, metadata, recorded_at
FROM (
    SELECT *
    FROM events
    WHERE position > $1 AND type = ANY ($2::text[])
    UNION ALL
    SELECT *
    FROM events
    WHERE position IS NULL AND type = ANY ($2::text[])
) tail
ORDER BY position NULLS LAST, transaction_id, id

-- name: drop_table
DROP TABLE IF EXISTS {table}

-- name: clone_table
-- Unlogged while the replay writes it (every row is rewritten once per event; none of that
-- needs the WAL, since a rebuild that fails starts again from the log), logged before the swap.
CREATE UNLOGGED TABLE {fresh} (LIKE {live} INCLUDING ALL)

-- name: log_table
-- One rewrite of the finished clone into the WAL, outside the swap's locks.
ALTER TABLE {table} SET LOGGED

-- name: lock_tables
-- ACCESS EXCLUSIVE from the start, not EXCLUSIVE and then the rename's ACCESS EXCLUSIVE: an
-- inline writer reads a read model (its applied version) before it writes it, and one that read
-- before this lock and then waits to write would hold its read lock against that upgrade (a
-- deadlock). Asked for at once, the lock waits for such a writer to commit. Readers wait for
-- the swap as they would for the rename anyway.
LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE

-- name: rename_table
ALTER TABLE {table} RENAME TO {to}

-- name: rename_constraint
ALTER TABLE {table} RENAME CONSTRAINT {name} TO {to}

-- name: rename_index
ALTER INDEX {name} RENAME TO {to}

-- name: indexes
-- Each index of a table with its definition minus its own and its table's names, so that a
-- clone's indexes can be matched to the originals.
SELECT i.relname AS name,
       regexp_replace(pg_get_indexdef(i.oid), 'INDEX \S+ ON \S+', 'INDEX ON') AS definition,
       c.conname AS constraint_name
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
WHERE x.indrelid = $1::regclass
