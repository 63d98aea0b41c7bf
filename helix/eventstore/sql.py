"""The event store's own named SQL (`queries.sql`), with the visibility rule of the audit reads
spliced in once."""

from __future__ import annotations

from helix import access, envelope
from helix.sql import load

# The append lock ("HELIX" · 2) that `helix_append_lock()` (migration 0009) takes, shared, in
# every transaction that appends; the sequencer's horizon reads its holders. A bigint key shows
# in pg_locks split in two: classid the high 32 bits, objid the low 32, and objsubid 1.
APPEND_LOCK = 0x48454C4958_0002

# The audit queries name their viewer in $8 (`audit_event_at` in $2): `Viewer.owner_filter`.
_AUDIT_VIEWER = access.parameter_viewer("$8")
STORED_COLUMNS = (
    "event_id, stream_id, stream_type, version, position, project_id, type, schema_version, "
    "data, metadata, recorded_at"
)
# What the streams read: the columns they filter on, and the event's public JSON rendered by
# PostgreSQL (`helix.envelope.PUBLIC_SQL`), written to clients as it comes.
PUBLIC_COLUMNS = f"position, stream_id, project_id, type, ({envelope.PUBLIC_SQL})::text AS json"


def _load(read_columns: str) -> dict[str, str]:
    return load(
        "helix.eventstore",
        "queries.sql",
        fragments=("audit_columns", "audit_filters", "oldest_appender"),
        shared=_SHARED | {"read_columns": read_columns},
    )


_SHARED = {
    "audit_viewer": access.event_visible(_AUDIT_VIEWER),
    "audit_viewer_stream": access.user_stream(_AUDIT_VIEWER),
    "audit_viewer_projects": access.owned_projects(_AUDIT_VIEWER),
    "event_at_viewer": access.event_visible(access.parameter_viewer("$2")),
    "append_lock_classid": str(APPEND_LOCK >> 32),
    "append_lock_objid": str(APPEND_LOCK & 0xFFFFFFFF),
}
QUERIES = _load(STORED_COLUMNS)
PUBLIC_QUERIES = _load(PUBLIC_COLUMNS)
