"""`helix projections rebuild NAME`: rebuild a read model into fresh tables and swap them in.

The replay runs into `<table>_rebuild` clones while the live tables keep serving (and keep being
written inline). It reads the log in large pages and applies each page in bulk, in one
transaction (`Projection.replay`: the page's writes grouped per statement, each group sent as
one pipelined batch), so a rebuild costs a few round trips per page rather than several per
event. A rebuild that fails or is stopped half way leaves the live tables as they were (it only
ever wrote the clones, which the next rebuild drops). The swap is one short transaction: lock
the checkpoint row, then the live tables against everyone (in the order inline writers take
them), apply whatever committed since the replay's last batch (sequenced or not yet), rename the
clones into place, give their indexes and constraints the original names (so the next rebuild
can clone again), and store the checkpoint. Writers blocked on the lock resume against the new
tables, since PostgreSQL looks a name up again after waiting for its lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg
import attrs

from helix.eventstore import EventStore, RecordedEvent
from helix.eventstore.sql import QUERIES
from helix.sql import load
from projections import registry
from projections.base import Projection, Tables

SQL = load("projections", "runner.sql")
SUFFIX = "_rebuild"


@attrs.frozen(kw_only=True)
class Progress:
    projection: str
    position: int  # the log position replayed so far
    target: int  # the head when the rebuild started (the log may grow meanwhile)
    events: int  # events applied so far
    elapsed: float  # seconds


@attrs.frozen(kw_only=True)
class RebuildReport:
    projection: str
    events: int
    position: int
    seconds: float


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def rebuild(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = 5000,
    progress: Callable[[Progress], None] | None = None,
) -> RebuildReport:
    started = time.monotonic()
    live = registry.live(projection)
    fresh: Tables = {name: name + SUFFIX for name in projection.tables}
    types = sorted(projection.event_types)
    async with store.pool.acquire() as conn:
        async with conn.transaction():
            for name in projection.tables:
                await conn.execute(SQL["drop_table"].format(table=ident(fresh[name])))
                await conn.execute(
                    SQL["clone_table"].format(fresh=ident(fresh[name]), live=ident(live[name]))
                )
        target = await store.head(conn)
        position = applied = 0
        while True:
            batch = await store.read_all(position, batch_size, types=types, on=conn)
            if batch:
                async with conn.transaction():
                    await projection.replay(conn, batch, fresh)
                last = batch[-1].position
                assert last is not None
                position, applied = last, applied + len(batch)
            if progress is not None:
                progress(
                    Progress(
                        projection=projection.name,
                        position=max(position, target) if len(batch) < batch_size else position,
                        target=target,
                        events=applied,
                        elapsed=time.monotonic() - started,
                    )
                )
            if len(batch) < batch_size:
                break
        for name in projection.tables:
            await conn.execute(SQL["log_table"].format(table=ident(fresh[name])))
        async with conn.transaction():
            applied += await _swap(conn, projection, live, fresh, position)
    return RebuildReport(
        projection=projection.name,
        events=applied,
        position=position,
        seconds=time.monotonic() - started,
    )


async def _swap(
    conn: asyncpg.Connection, projection: Projection, live: Tables, fresh: Tables, position: int
) -> int:
    await conn.execute(SQL["lock_checkpoint"], projection.name, projection.version)
    tables = ", ".join(ident(live[name]) for name in projection.tables)
    await conn.execute(SQL["lock_tables"].format(tables=tables))
    head = int(await conn.fetchval(QUERIES["head"]))
    rows = await conn.fetch(SQL["tail_events"], position, sorted(projection.event_types))
    tail = [RecordedEvent.from_row(row) for row in rows]
    for event in tail:
        await projection.apply(conn, event, fresh)
    # Every event up to the head is committed and sequenced, hence in the replay or the tail.
    checkpoint = max([position, head, *(e.position for e in tail if e.position is not None)])
    for name in projection.tables:
        await _rename_into_place(conn, live[name], fresh[name])
    await conn.execute(SQL["save_checkpoint"], projection.name, projection.version, checkpoint)
    return len(tail)


async def _rename_into_place(conn: asyncpg.Connection, live: str, fresh: str) -> None:
    originals = {r["definition"]: r for r in await conn.fetch(SQL["indexes"], ident(live))}
    clones = list(await conn.fetch(SQL["indexes"], ident(fresh)))
    retired = live + "_retired"
    await conn.execute(SQL["rename_table"].format(table=ident(live), to=ident(retired)))
    await conn.execute(SQL["rename_table"].format(table=ident(fresh), to=ident(live)))
    await conn.execute(SQL["drop_table"].format(table=ident(retired)))
    for clone in clones:
        original = originals.get(clone["definition"])
        if original is None or original["name"] == clone["name"]:
            continue
        if clone["constraint_name"] and original["constraint_name"]:
            await conn.execute(
                SQL["rename_constraint"].format(
                    table=ident(live),
                    name=ident(clone["constraint_name"]),
                    to=ident(original["constraint_name"]),
                )
            )
        else:
            await conn.execute(
                SQL["rename_index"].format(name=ident(clone["name"]), to=ident(original["name"]))
            )
