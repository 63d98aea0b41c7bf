"""`helix events export`: the log (or a filtered part of it) as NDJSON, one event per line.

Each line holds every column needed to re-create the event exactly, hash included, so an
unfiltered export is a complete copy of the log that `helix events import` can load. The export
pages through the log by position and never holds more than a page in memory; it stops at the
head as it was when the export began, so a log that keeps growing still gives a finite export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import asyncpg
import attrs

from helix import envelope
from helix.audit.filters import EventFilter
from helix.audit.log import select
from helix.eventstore.sql import QUERIES


class Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


@attrs.frozen(kw_only=True)
class ExportReport:
    events: int
    head: int  # the log's head when the export began: nothing after it was exported
    last_position: int  # the position of the last exported event (0: none)


def export_line(row: Mapping[str, Any]) -> str:
    return json.dumps(envelope.export(row), separators=(",", ":")) + "\n"


async def export_events(
    pool: asyncpg.Pool,
    out: Writable,
    selection: EventFilter | None = None,
    *,
    page_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write every sequenced event matching `selection` (all by default) to `out`."""
    head = int(await pool.fetchval(QUERIES["head"]))
    selection = selection or EventFilter()
    up_to = head if selection.up_to is None else min(selection.up_to, head)
    selection = attrs.evolve(selection, up_to=up_to)
    count = 0
    while True:
        rows = await select(pool, selection, page_size)
        for row in rows:
            out.write(export_line(row))
        count += len(rows)
        if progress is not None and rows:
            progress(count)
        if len(rows) < page_size:
            break
        selection = attrs.evolve(selection, after=rows[-1]["position"])
    last = rows[-1]["position"] if rows else selection.after
    return ExportReport(events=count, head=head, last_position=last if count else 0)
