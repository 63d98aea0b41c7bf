from __future__ import annotations

import asyncio
import uuid

import asyncpg
import attrs
import pytest

from helix.bootstrap import LogNode
from helix.errors import ConcurrencyError
from helix.eventstore import ANY_VERSION, EncodedEvent
from helix.serialization import EventRegistry


def ev(n: int = 0, type_: str = "test.happened") -> EncodedEvent:
    return EncodedEvent(type=type_, schema_version=1, data={"n": n})


async def test_an_append_gives_the_stream_consecutive_versions(node: LogNode) -> None:
    store = node.store
    first = await store.append("thing-1", 0, [ev(1), ev(2)], metadata={"actor": "user:a"})
    second = await store.append("thing-1", 2, [ev(3)], metadata={"actor": "user:b"})

    events = await store.read_stream("thing-1")
    assert (first.first_version, first.last_version) == (1, 2)
    assert (second.first_version, second.last_version) == (3, 3)
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.data["n"] for e in events] == [1, 2, 3]
    assert [e.metadata["actor"] for e in events] == ["user:a", "user:a", "user:b"]
    assert all(e.stream_type == "thing" for e in events)
    assert [e.version for e in await store.read_stream("thing-1", after_version=2)] == [3]


async def test_two_appends_with_the_same_expected_version_exactly_one_succeeds(
    node: LogNode,
) -> None:
    store = node.store
    await store.append("race-1", 0, [ev()])

    results = await asyncio.gather(
        *(store.append("race-1", 1, [ev(i)]) for i in range(8)), return_exceptions=True
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, ConcurrencyError) for e in losers)
    assert all((e.expected, e.actual) == (1, 2) for e in losers if isinstance(e, ConcurrencyError))
    assert [e.version for e in await store.read_stream("race-1")] == [1, 2]


async def test_creating_a_stream_that_exists_is_a_conflict_with_the_actual_version(
    node: LogNode,
) -> None:
    await node.store.append("made-1", 0, [ev(), ev()])
    with pytest.raises(ConcurrencyError) as refused:
        await node.store.append("made-1", 0, [ev()])
    assert (refused.value.expected, refused.value.actual) == (0, 2)
    with pytest.raises(ConcurrencyError) as ahead:
        await node.store.append("never-1", 3, [ev()])
    assert (ahead.value.expected, ahead.value.actual) == (3, 0)
    assert await node.store.read_stream("never-1") == []


async def test_an_append_without_expected_version_continues_the_stream(node: LogNode) -> None:
    await node.store.append("any-1", ANY_VERSION, [ev(1)])
    await node.store.append("any-1", ANY_VERSION, [ev(2), ev(3)])
    assert [e.version for e in await node.store.read_stream("any-1")] == [1, 2, 3]


async def test_a_duplicate_event_id_fails_the_whole_append(node: LogNode) -> None:
    store = node.store
    dup = ev(1)
    await store.append("dup-1", 0, [dup])
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.append("dup-2", 0, [ev(2), dup])
    assert await store.read_stream("dup-2") == []
    with pytest.raises(ConcurrencyError):  # the stream still has no events
        await store.append("dup-2", 1, [ev(3)])


async def test_positions_are_dense_and_follow_commit_order_of_held_transactions(
    node: LogNode,
) -> None:
    store, pool = node.store, node.pool
    assert pool is not None
    held = await pool.acquire()
    tx = held.transaction()
    await tx.start()
    await store.append("held-1", 0, [ev(1)], conn=held)  # takes the older transaction id
    await store.append("quick-1", 0, [ev(2)])  # commits first

    await asyncio.sleep(0.3)
    assert await store.read_all(0) == [], "nothing may be positioned while an older one runs"

    await tx.commit()
    await pool.release(held)
    store.committed()
    assert await store.wait_for_position(2, timeout=5)
    events = await store.read_all(0)
    assert [(e.position, e.stream_id) for e in events] == [(1, "held-1"), (2, "quick-1")]


async def test_a_rolled_back_append_never_appears(node: LogNode) -> None:
    store, pool = node.store, node.pool
    assert pool is not None
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await store.append("gone-1", 0, [ev(1)], conn=conn)
        await tx.rollback()
    await store.append("kept-1", 0, [ev(2)])
    assert await store.wait_for_position(1, timeout=5)
    await asyncio.sleep(0.2)
    assert [e.stream_id for e in await store.read_all(0)] == ["kept-1"]
    assert await store.head() == 1


async def test_read_all_filters_by_stream_project_and_type_glob(node: LogNode) -> None:
    store = node.store
    p1, p2 = uuid.uuid4(), uuid.uuid4()
    await store.append("job-a", 0, [ev(1, "job.queued"), ev(2, "job.started")], project_id=p1)
    await store.append("job-b", 0, [ev(3, "job.queued")], project_id=p2)
    await store.append("project-c", 0, [ev(4, "project.created")], project_id=p1)
    await store.append("misc-d", 0, [ev(5, "job_queued")])
    assert await store.wait_for_position(5, timeout=5)

    def ns(events: list) -> list[int]:  # type: ignore[type-arg]
        return [e.data["n"] for e in events]

    assert ns(await store.read_all(0)) == [1, 2, 3, 4, 5]
    assert ns(await store.read_all(0, stream_id="job-a")) == [1, 2]
    assert ns(await store.read_all(0, project_id=p1)) == [1, 2, 4]
    assert ns(await store.read_all(0, types=["job.*"])) == [1, 2, 3]
    assert ns(await store.read_all(0, types=["job.queued", "project.*"])) == [1, 3, 4]
    assert ns(await store.read_all(0, project_id=p1, types=["job.q*"])) == [1]
    assert ns(await store.read_all(2, limit=2)) == [3, 4]


@attrs.frozen(kw_only=True)
class Renamed:
    title: str
    priority: int


async def test_an_event_stored_with_an_old_schema_version_reads_back_through_its_upcaster(
    node: LogNode,
) -> None:
    registry = EventRegistry()
    registry.register("test.renamed", Renamed, schema_version=3)

    @registry.upcaster("test.renamed", 1)
    def v1_to_v2(data: dict) -> dict:  # type: ignore[type-arg]
        return {"title": data.pop("name"), **data}

    @registry.upcaster("test.renamed", 2)
    def v2_to_v3(data: dict) -> dict:  # type: ignore[type-arg]
        return {**data, "priority": data.get("priority", 5)}

    await node.store.append(
        "old-1", 0, [EncodedEvent(type="test.renamed", schema_version=1, data={"name": "x"})]
    )
    [stored] = await node.store.read_stream("old-1")
    assert stored.schema_version == 1 and stored.data == {"name": "x"}
    assert registry.decode(stored) == Renamed(title="x", priority=5)
    assert registry.encode(Renamed(title="y", priority=1)).schema_version == 3


async def _open_tx(node: LogNode) -> tuple[asyncpg.Connection, object]:
    assert node.pool is not None
    conn = await node.pool.acquire()
    tx = conn.transaction()
    await tx.start()
    return conn, tx


async def test_a_stream_keeps_version_order_when_an_older_transaction_appends_later(
    node: LogNode,
) -> None:
    store, pool = node.store, node.pool
    assert pool is not None
    # T2 takes the older transaction id by writing first, elsewhere.
    c2, t2 = await _open_tx(node)
    await store.append("other-1", 0, [ev(0)], conn=c2)
    # T3, an append transaction too, runs in between and holds the horizon, so T1's rows are
    # not yet eligible.
    c3, t3 = await _open_tx(node)
    await store.append("between-1", 0, [ev(3)], conn=c3)
    await store.append("shared-1", 0, [ev(1)])  # T1: version 1, younger id, commits now
    await store.append("shared-1", 1, [ev(2)], conn=c2)  # T2: version 2
    await t2.commit()  # type: ignore[attr-defined]
    store.committed()
    assert await store.wait_for_position(1, timeout=5)
    await asyncio.sleep(0.3)
    early = await store.read_all(0)
    assert [e.stream_id for e in early] == ["other-1"], "version 2 waits for version 1"

    await t3.commit()  # type: ignore[attr-defined]
    for conn in (c2, c3):
        await pool.release(conn)
    assert await store.wait_for_position(4, timeout=5)
    shared = [e for e in await store.read_all(0) if e.stream_id == "shared-1"]
    assert [e.version for e in shared] == [1, 2]
    assert shared[0].position is not None and shared[1].position is not None
    assert shared[0].position < shared[1].position
