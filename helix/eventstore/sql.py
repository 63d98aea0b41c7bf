"""The event store's own named SQL (`queries.sql`), with the visibility rule of the audit reads
spliced in once."""

from __future__ import annotations

from helix import access
from helix.sql import load

# The audit queries name their viewer in $8 (`audit_event_at` in $2): `Viewer.owner_filter`.
_AUDIT_VIEWER = access.parameter_viewer("$8")
QUERIES = load(
    "helix.eventstore",
    "queries.sql",
    fragments=("audit_columns", "audit_filters"),
    shared={
        "audit_viewer": access.event_visible(_AUDIT_VIEWER),
        "audit_viewer_stream": access.user_stream(_AUDIT_VIEWER),
        "audit_viewer_projects": access.owned_projects(_AUDIT_VIEWER),
        "event_at_viewer": access.event_visible(access.parameter_viewer("$2")),
    },
)
