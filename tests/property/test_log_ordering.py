"""Concurrent writers and readers: every reader sees every committed event exactly once, in one
shared order, with dense positions, and never a rolled-back event; also while a transaction
that does not append holds a transaction id older than every append."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.database import init_connection
from helix.eventstore import ANY_VERSION, EncodedEvent

WRITERS = 8
READERS = 3

transaction = st.fixed_dictionaries(
    {
        "events": st.integers(1, 4),
        "commit": st.booleans() | st.just(True),  # mostly commits
        "hold_ms": st.sampled_from([0, 0, 0, 1, 5, 20, 80]),
        # Also append to a stream every writer shares, before or after its own stream.
        "shared": st.sampled_from([None, None, "before", "after"]),
    }
)
workload = st.lists(
    st.lists(transaction, min_size=1, max_size=6), min_size=WRITERS, max_size=WRITERS
)
reader_pages = st.lists(st.integers(1, 7), min_size=READERS, max_size=READERS)
# A foreign transaction (an analyst's psql session) holding a transaction id for the whole run.
foreign_xid = st.booleans()


async def _writer(url: str, node: LogNode, txs: list[dict], committed: list[uuid.UUID]) -> None:  # type: ignore[type-arg]
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    stream = f"w-{uuid.uuid4().hex}"
    version = 0
    try:
        for tx in txs:
            events = [
                EncodedEvent(type="test.written", schema_version=1, data={"i": i})
                for i in range(tx["events"])
            ]
            t = conn.transaction()
            await t.start()
            shared = [EncodedEvent(type="test.shared", schema_version=1, data={})]
            if tx["shared"] == "before":
                await node.store.append("shared-0", ANY_VERSION, shared, conn=conn)
            await node.store.append(stream, version, events, conn=conn)
            if tx["shared"] == "after":
                await node.store.append("shared-0", ANY_VERSION, shared, conn=conn)
            written = events + shared if tx["shared"] else events
            if tx["hold_ms"]:
                await asyncio.sleep(tx["hold_ms"] / 1000)  # others commit past us meanwhile
            if tx["commit"]:
                await t.commit()
                version += len(events)
                committed.extend(e.event_id for e in written)
            else:
                await t.rollback()
            node.store.committed()
    finally:
        await conn.close()


Seen = list[tuple[int, uuid.UUID, str, int]]


async def _reader(node: LogNode, page: int, done: asyncio.Event) -> Seen:
    seen: Seen = []
    checkpoint = 0
    while True:
        finished = done.is_set()  # read after the flag so the last page is not missed
        batch = await node.store.read_all(checkpoint, page)
        seen.extend((e.position, e.event_id, e.stream_id, e.version) for e in batch if e.position)
        if batch:
            checkpoint = batch[-1].position or checkpoint
        elif finished:
            return seen
        else:
            await asyncio.sleep(0.002)


async def _run(url: str, plan: list[list[dict]], pages: list[int], foreign: bool) -> None:  # type: ignore[type-arg]
    admin = await asyncpg.connect(url)
    await admin.execute(
        "TRUNCATE events, streams; UPDATE sequencer_state SET head_position = 0,"
        " head_hash = '\\x' || repeat('00', 32)::text::bytea"
    )
    if foreign:
        await admin.execute("BEGIN")
        await admin.execute("SELECT pg_current_xact_id()")
    node = LogNode(url, Settings(sequencer_poll_interval=0.05, wakeup_interval=0.001))
    await node.start()
    try:
        committed: list[uuid.UUID] = []
        done = asyncio.Event()
        readers = [asyncio.create_task(_reader(node, p, done)) for p in pages]
        try:
            await asyncio.gather(*(_writer(url, node, txs, committed) for txs in plan))
            assert await node.store.wait_for_position(len(committed), timeout=10)
            done.set()
            views = await asyncio.gather(*readers)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await node.stop()
        await admin.close()  # the foreign transaction, if any, ran until every event had a place

    expected = set(committed)
    first = views[0]
    assert [s[0] for s in first] == list(range(1, len(committed) + 1)), "positions are dense"
    assert len({s[1] for s in first}) == len(first), "no event twice"
    assert {s[1] for s in first} == expected, "every committed event, no rolled-back one"
    versions: dict[str, list[int]] = {}
    for _, _, stream, version in first:
        versions.setdefault(stream, []).append(version)
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"{stream} in version order"
    for other in views[1:]:
        assert other == first, "every reader sees the same order"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=workload, pages=reader_pages, foreign=foreign_xid)
def test_concurrent_readers_see_every_committed_event_once_in_one_dense_order(
    database_url: str,
    plan: list[list[dict]],
    pages: list[int],  # type: ignore[type-arg]
    foreign: bool,
) -> None:
    asyncio.run(_run(database_url, plan, pages, foreign))
