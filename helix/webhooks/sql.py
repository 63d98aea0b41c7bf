"""The named SQL of the webhooks package, with the visibility rule spliced in once."""

from __future__ import annotations

from helix import access
from helix.sql import load

# For an endpoint `w`, its owner `u` (users) and an event `ev`: the events the owner may see,
# as a set-based predicate so one statement dispatches a whole batch.
VISIBLE = access.event_visible(
    access.user_viewer("u.role", "w.owner"), stream_id="ev.stream_id", project_id="ev.project_id"
)
# An endpoint list's owner filter: $1 is the viewer's owner filter (NULL: everyone's).
OWNED = access.owned_visible(access.parameter_viewer("$1"), owner="w.owner::text")
QUERIES = load("helix.webhooks", "queries.sql", shared={"visible": VISIBLE, "owned": OWNED})
