"""Every projection by name, and the inline application used by the command handlers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from helix.eventstore import RecordedEvent
from projections import jobs, messages, output, phases, projects, users, webhooks, workers
from projections.base import Projection, Tables

# Applied in this order, inline and by the runner (each on its own checkpoint).
ALL: tuple[Projection, ...] = (
    projects.PROJECTION,
    messages.PROJECTION,
    jobs.PROJECTION,
    phases.PROJECTION,
    output.PROJECTION,
    users.PROJECTION,
    webhooks.PROJECTION,
    workers.PROJECTION,
)
BY_NAME: dict[str, Projection] = {p.name: p for p in ALL}
# The read models behind the project, discussion and job routes.
DOMAIN: tuple[Projection, ...] = (
    projects.PROJECTION,
    messages.PROJECTION,
    jobs.PROJECTION,
    phases.PROJECTION,
    output.PROJECTION,
)


class UnknownProjection(LookupError):
    pass


def get(name: str) -> Projection:
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(BY_NAME))
        raise UnknownProjection(f"no projection named {name!r} (known: {known})") from None


def live(projection: Projection) -> Tables:
    return {name: name for name in projection.tables}


async def apply_inline(
    conn: asyncpg.Connection,
    events: Sequence[RecordedEvent],
    projections: Iterable[Projection] = ALL,
) -> None:
    """Apply freshly appended events to the inline read models, in the append transaction."""
    for projection in projections:
        if not projection.inline:
            continue
        tables = live(projection)
        for event in events:
            if event.type in projection.event_types:
                await projection.apply(conn, event, tables)
