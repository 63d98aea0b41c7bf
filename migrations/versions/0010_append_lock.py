"""The append lock: appends hold a shared transaction-level advisory lock, so the sequencer's
horizon waits only for Helix's own append transactions (helix/eventstore/sequencer.py).

`helix_append_lock()` takes the lock for its transaction once, and refuses a transaction that
already has a transaction id without it: that id could be older than a horizon the sequencer
has already passed. Every INSERT of an unpositioned event calls it before its first row.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The key is APPEND_LOCK in helix/eventstore/sql.py ("HELIX" · 2); pg_locks shows it as
# classid 4736332, objid 1230503938.
APPEND_LOCK_FUNCTION = """
CREATE FUNCTION helix_append_lock() RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- Set with is_local: it goes with the lock, at the transaction's end or when the
    -- savepoint that took the lock rolls back.
    IF current_setting('helix.append_lock', true) = 'held' THEN
        RETURN true;
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'this transaction wrote before it took the append lock'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'take it first (EventStore.begin_appending) in a transaction that appends';
    END IF;
    PERFORM pg_advisory_xact_lock_shared(20342392273502210);
    PERFORM set_config('helix.append_lock', 'held', true);
    RETURN true;
END
$$
"""


def upgrade() -> None:
    op.execute(APPEND_LOCK_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION helix_append_lock()")
