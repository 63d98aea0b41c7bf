"""Filtered reads of the log stay correct and bounded however large the log and however rare
the filter: typed reads go through stretches of the position index, stream and project reads
through their own indexes, and none of them falls back to scanning the whole log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import attrs
import pytest
import pytest_asyncio

from helix.audit import log as audit_log
from helix.audit.filters import EventFilter
from helix.bootstrap import LogNode
from helix.eventstore import EncodedEvent
from helix.eventstore.sql import QUERIES
from helix.eventstore.store import MAX_WINDOW, MIN_WINDOW
from tests.support import TEST_SETTINGS, FreshDatabases, started_node

STREAMS = 50  # filler streams, each of one project
PER_STREAM = 200  # 10,000 filler events: more than two stretches of a typed read

# The tests here only read: they share one database, one node and one log of 10,000 events,
# written once for the module (a log that size takes seconds to write).
pytestmark = pytest.mark.asyncio(loop_scope="module")


def ev(type_: str, n: int) -> EncodedEvent:
    return EncodedEvent(type=type_, schema_version=1, data={"n": n})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def database_url(fresh_databases: FreshDatabases) -> AsyncIterator[str]:
    async with fresh_databases.database() as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(database_url: str) -> AsyncIterator[LogNode]:
    async with started_node(database_url, TEST_SETTINGS) as log_node:
        yield log_node


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def log(node: LogNode) -> dict[str, list[int]]:
    """10,000 filler events in 50 streams with rare ones among them; positions by type family
    and of the stream `filler-0`."""
    store = node.store
    rare = 0
    for k in range(STREAMS):
        events = [ev("filler.ticked", k * PER_STREAM + n) for n in range(PER_STREAM)]
        await store.append(f"filler-{k}", 0, events, project_id=uuid.uuid4())
        if k in (0, 20, STREAMS - 1):
            await store.append("rare-1", rare, [ev("rare.seen", rare)])
            rare += 1
    total = STREAMS * PER_STREAM + rare
    assert await store.wait_for_position(total, timeout=60)
    assert total > 2 * MIN_WINDOW
    everything = await store.read_all(0, 100_000)
    assert [e.position for e in everything] == list(range(1, total + 1))
    positions = {
        family: [e.position for e in everything if e.type.startswith(family)]
        for family in ("filler.", "rare.")
    }
    positions["filler-0"] = [e.position for e in everything if e.stream_id == "filler-0"]
    return positions


async def test_a_rare_type_is_found_across_the_whole_log(
    node: LogNode, log: dict[str, list[int]]
) -> None:
    store = node.store
    rare = log["rare."]

    assert [e.position for e in await store.read_all(0, 10, types=["rare.*"])] == rare
    paged, after = [], 0
    while page := await store.read_all(after, 1, types=["rare.seen"]):
        paged += [e.position for e in page]
        after = page[-1].position or 0
    assert paged == rare
    assert await store.read_all(rare[-1], 10, types=["rare.*"]) == []


async def test_paging_a_common_type_returns_each_event_once_in_order(
    node: LogNode, log: dict[str, list[int]]
) -> None:
    store = node.store
    filler = log["filler."]

    first = await store.read_all(0, 1000, types=["filler.*"])
    assert [e.position for e in first] == filler[:1000]
    paged, after = [], 0
    while page := await store.read_all(after, 777, types=["filler.ticked", "rare.*"]):
        paged += [e.position for e in page]
        after = page[-1].position or 0
    assert paged == sorted(filler + log["rare."])


async def test_project_and_stream_reads_page_through_their_events(
    node: LogNode, log: dict[str, list[int]]
) -> None:
    store = node.store
    stream = log["filler-0"]
    [project] = {e.project_id for e in await store.read_all(0, 10, stream_id="filler-0")}
    assert project is not None

    by_project = await store.read_all(stream[49], 100, project_id=project)
    by_stream = await store.read_all(stream[49], 100, stream_id="filler-0", types=["filler.*"])
    assert [e.position for e in by_project] == stream[50:150]
    assert [e.position for e in by_stream] == stream[50:150]
    assert await store.read_all(0, 10, stream_id="filler-0", project_id=uuid.uuid4()) == []


async def test_audit_pages_with_filters_no_index_serves_cover_the_log_once(
    node: LogNode, log: dict[str, list[int]]
) -> None:
    assert node.pool is not None
    rare, filler = log["rare."], log["filler."]

    async def pages(selection: EventFilter, size: int) -> list[int]:
        found: list[int] = []
        while True:
            rows = await audit_log.select(node.pool, selection, size)
            found += [r["position"] for r in rows]
            if len(rows) < size:
                return found
            selection = attrs.evolve(selection, after=rows[-1]["position"])

    assert await pages(EventFilter(types=("rare.*",)), 2) == rare
    assert await pages(EventFilter(types=("filler.*",), up_to=filler[2999]), 1000) == filler[:3000]
    assert await pages(EventFilter(actor="nobody"), 50) == []
    assert await pages(EventFilter(after=rare[0], stream_id="rare-1"), 1) == rare[1:]


AUDIT = "text[], text, timestamptz, timestamptz, text"  # the filters no index serves
NO_FILTER = "NULL, NULL, NULL, NULL, NULL"


class Recorder:
    """The store's pool, recording the typed reads' stretches of positions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.windows: list[tuple[int, int]] = []

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        if query == QUERIES["read_window"]:
            after, _, up_to, _ = args
            self.windows.append((int(after), int(up_to)))  # type: ignore[call-overload]
        rows: list[asyncpg.Record] = await self.pool.fetch(query, *args)
        return rows

    async def fetchval(self, query: str, *args: object) -> object:
        return await self.pool.fetchval(query, *args)


async def test_typed_reads_cover_the_log_once_in_bounded_stretches(
    node: LogNode, log: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = node.store
    head = await store.head()
    recorder = Recorder(store.pool)
    monkeypatch.setattr(store, "pool", recorder)

    near_head = await store.read_all(head - 5, 100, types=["rare.*"])
    assert recorder.windows == [(head - 5, head)]
    assert [e.position for e in near_head] == [p for p in log["rare."] if p > head - 5]

    recorder.windows.clear()
    assert await store.read_all(0, 100, types=["nothing.*"]) == []
    # Contiguous up to the head, the first stretch the smallest, the next twice as long (cut
    # at the head): 10,003 positions in two queries.
    assert head < 3 * MIN_WINDOW <= MAX_WINDOW
    assert recorder.windows == [(0, MIN_WINDOW), (MIN_WINDOW, head)]


@pytest.mark.parametrize(
    ("query", "params", "args", "index"),
    [
        ("read_window", "bigint, int, bigint, text[]", "0, 100, 100, '{rare.%}'",
         "events_position_key"),
        ("read_all_project", "bigint, int, uuid, text[]", f"0, 100, '{uuid.uuid4()}', NULL",
         "events_project_position_idx"),
        ("read_all_stream", "bigint, int, text, text[], uuid", "0, 100, 'rare-1', NULL, NULL",
         "events_stream_version_key"),
        ("audit_events", f"bigint, int, bigint, {AUDIT}", f"0, 100, 100, {NO_FILTER}",
         "events_position_key"),
        ("audit_events_stream", f"bigint, int, bigint, {AUDIT}, text, uuid",
         f"0, 100, NULL, {NO_FILTER}, 'rare-1', NULL", "events_stream_version_key"),
        ("audit_events_project", f"bigint, int, bigint, {AUDIT}, uuid",
         f"0, 100, NULL, {NO_FILTER}, '{uuid.uuid4()}'", "events_project_position_idx"),
        ("audit_events_viewer", f"bigint, int, bigint, {AUDIT}",
         "0, 100, NULL, NULL, NULL, NULL, NULL, 'someone'", "events_project_position_idx"),
    ],
)  # fmt: skip
async def test_a_cached_plan_of_a_filtered_read_goes_through_its_index(
    node: LogNode,
    log: dict[str, list[int]],
    database_url: str,
    query: str,
    params: str,
    args: str,
    index: str,
) -> None:
    """The plan a pooled connection keeps once it stops planning each execution (a generic
    plan) must not be a scan of the whole log: that made every typed page cost the log's size."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE events")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE q ({params}) AS {QUERIES[query]}")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE q ({args})"))
    finally:
        await conn.close()

    assert index in plan, plan
    assert "Seq Scan on events" not in plan, plan
