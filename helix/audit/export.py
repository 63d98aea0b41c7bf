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
from helix.audit import credentials
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
    credentials: int = 0  # protected lines written after the events


def export_line(row: Mapping[str, Any]) -> str:
    return json.dumps(envelope.export(row), separators=(",", ":")) + "\n"


async def export_events(
    pool: asyncpg.Pool,
    out: Writable,
    selection: EventFilter | None = None,
    *,
    page_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    with_credentials: bool = False,
) -> ExportReport:
    """Write every sequenced event matching `selection` (all by default) to `out`; with
    `with_credentials`, then the protected section (`helix.audit.credentials`): the rows of
    the aggregates this export holds, and the server's secrets."""
    head = int(await pool.fetchval(QUERIES["head"]))
    selection = selection or EventFilter()
    up_to = head if selection.up_to is None else min(selection.up_to, head)
    selection = attrs.evolve(selection, up_to=up_to)
    count = 0
    streams: set[str] = set()  # of the aggregates that have credentials
    prefixes = tuple(t.stream_prefix for t in credentials.TABLES if t.stream_prefix)
    while True:
        rows = await select(pool, selection, page_size)
        for row in rows:
            out.write(export_line(row))
            if row["stream_id"].startswith(prefixes):
                streams.add(row["stream_id"])
        count += len(rows)
        if progress is not None and rows:
            progress(count)
        if len(rows) < page_size:
            break
        selection = attrs.evolve(selection, after=rows[-1]["position"])
    last = rows[-1]["position"] if rows else selection.after
    written = 0
    if with_credentials:
        for name, row in await credentials.rows(pool):
            table = credentials.BY_NAME[name]
            prefix = table.stream_prefix
            if prefix is None or prefix + str(row[table.key]) in streams:
                out.write(credentials.line(name, row))
                written += 1
    return ExportReport(
        events=count, head=head, last_position=last if count else 0, credentials=written
    )
