"""The projection runner and `projections rebuild` against a real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.database import create_pool
from helix.domain import job, project
from helix.domain.job import OutputStream
from helix.domain.project import MessageRole, PhaseSpec
from helix.eventstore import RecordedEvent
from helix.eventstore.store import EventStore
from helix.services import Caller, Services
from projections import registry
from projections.rebuild import Progress, rebuild
from projections.runner import ProjectionRunner, catch_up, run_batch, status
from tests.support import RegisteredWorker, settled

ALICE = Caller(user_id="alice-id", name="alice", actor="user:alice-id")
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PLAN = (PhaseSpec(name="plan"), PhaseSpec(name="build", command=("make",)))


async def dump(pool: asyncpg.Pool, table: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")
    return [dict(r) for r in rows]


async def dump_all(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    return {
        table: await dump(pool, table)
        for projection in registry.DOMAIN
        for table in projection.tables
    }


async def some_history(services: Services) -> uuid.UUID:
    """A project with a discussion, a completed run with output, and a queued second run."""
    created = await services.projects.discuss(ALICE, content="a parser, please")
    assert created.id is not None
    pid = created.id
    await services.projects.update(ALICE, pid, description="LL(1)", phases=PLAN)
    await services.projects.mark_ready(ALICE, pid)
    run = await services.projects.execute(ALICE, pid, start_phase="build")
    assert run.job.id is not None
    worker = await RegisteredWorker.register(services.workers)
    token = (await worker.claim_job(run.job.id)).fencing_token
    now = services.jobs.writer.now()
    await worker.report_each(run.job.id, (
        job.StartPhase(fencing_token=token, phase="build", at=now),
        job.RecordOutput(fencing_token=token, phase="build", stream=OutputStream.STDOUT,
                         lines=("a", "b"), at=now),
        job.RecordCost(fencing_token=token, phase="build", tokens=10, usd=0.25, at=now),
        job.RecordFile(fencing_token=token, phase="build", path="out.txt", size=3,
                       sha256="ab" * 32, at=now),
        job.CompletePhase(fencing_token=token, phase="build", at=now),
        job.CompleteJob(fencing_token=token, at=now),
    ))  # fmt: skip
    await services.projects.execute(ALICE, pid)
    return pid


async def test_the_runner_builds_read_models_from_events_appended_without_them(
    node: LogNode,
) -> None:
    store = node.store
    pid = uuid.uuid4()
    created = project.decide(
        project.INITIAL,
        project.CreateProject(project_id=pid, name="raw", owner="o", phases=PLAN, at=AT),
    )
    await store.append(project.stream_id(pid), 0, created, project_id=pid)
    head = await settled(node)

    assert await catch_up(store, registry.get("projects")) == head

    row = await store.pool.fetchrow("SELECT * FROM projects WHERE project_id = $1", pid)
    assert row is not None
    assert (row["name"], row["status"], row["version"]) == ("raw", "draft", 2)
    assert [p["name"] for p in row["phases"]] == ["plan", "build"]


async def test_the_runner_changes_nothing_that_was_applied_inline(
    node: LogNode, services: Services
) -> None:
    await some_history(services)
    await settled(node)
    before = await dump_all(node.store.pool)

    for projection in registry.DOMAIN:
        await catch_up(node.store, projection)

    assert await dump_all(node.store.pool) == before
    assert all(s.lag == 0 for s in await status(node.store.pool, registry.DOMAIN))


async def test_catching_up_and_rebuilding_hold_one_connection_each(
    node: LogNode, services: Services, database_url: str
) -> None:
    """Every projection of a node catches up at once, and rebuilds, on a pool with fewer
    connections than projections: a batch reads the log on the connection it holds, so none
    waits for a second connection that the others hold."""
    await some_history(services)
    head = await settled(node)
    pool = await create_pool(database_url, Settings(), max_size=2)
    try:
        store = EventStore(pool, node.registry)
        async with asyncio.timeout(60):
            reached = await asyncio.gather(*(catch_up(store, p) for p in registry.ALL))
            await asyncio.gather(*(rebuild(store, p) for p in registry.DOMAIN))
    finally:
        await pool.close()
    assert reached == [head] * len(registry.ALL)


async def test_a_gap_in_a_stream_is_filled_in_version_order(node: LogNode) -> None:
    """An event met ahead of its predecessors (positions follow transaction ids, not versions)
    first pulls the missing ones from the log."""
    store = node.store
    pid = uuid.uuid4()
    events = project.decide(
        project.INITIAL,
        project.CreateProject(project_id=pid, name="gap", owner="o", phases=PLAN, at=AT),
    )
    await store.append(project.stream_id(pid), 0, events, project_id=pid)
    state = project.fold(events)
    ready = project.decide(state, project.MarkReady(at=AT))
    await store.append(project.stream_id(pid), 2, ready, project_id=pid)
    last = (await store.read_stream(project.stream_id(pid)))[-1]

    async with store.pool.acquire() as conn, conn.transaction():
        await registry.get("projects").apply(conn, last, registry.live(registry.get("projects")))

    row = await store.pool.fetchrow("SELECT * FROM projects WHERE project_id = $1", pid)
    assert (row["status"], row["version"], len(row["phases"])) == ("ready", 3, 2)


async def test_a_rebuild_equals_the_live_tables_and_keeps_their_index_names(
    node: LogNode, services: Services
) -> None:
    await some_history(services)
    await settled(node)
    live = await dump_all(node.store.pool)
    index_query = (
        "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
    )
    indexes = await node.store.pool.fetch(index_query)
    seen: list[Progress] = []

    for projection in registry.DOMAIN:
        report = await rebuild(node.store, projection, batch_size=3, progress=seen.append)
        assert report.events > 0

    assert await dump_all(node.store.pool) == live
    assert await node.store.pool.fetch(index_query) == indexes
    assert seen and seen[-1].position >= seen[-1].target
    # Rebuilding again works: the clone's names did not collide with the swapped-in ones.
    await rebuild(node.store, registry.get("projects"))
    assert await dump_all(node.store.pool) == live


async def test_the_api_keeps_reading_and_writing_during_a_rebuild(
    node: LogNode, services: Services
) -> None:
    pid = await some_history(services)
    stop = asyncio.Event()
    written: list[uuid.UUID] = []

    async def keep_busy() -> None:
        while not stop.is_set():
            await services.queries.project(ALICE, pid)
            state = await services.projects.post_message(ALICE, pid, content="still here")
            assert state.id == pid
            written.append(pid)

    busy = asyncio.create_task(keep_busy())
    for projection in registry.DOMAIN:
        await rebuild(node.store, projection, batch_size=2)
    stop.set()
    await busy

    assert written
    thread = await services.queries.messages(ALICE, pid, limit=1000)
    assert thread["total"] == 1 + len(written)
    assert [m["seq"] for m in thread["items"]] == list(range(1, thread["total"] + 1))
    await settled(node)
    before = await dump_all(node.store.pool)
    for projection in registry.DOMAIN:
        await rebuild(node.store, projection)
    assert await dump_all(node.store.pool) == before


async def test_status_reports_each_projections_position_and_lag(
    node: LogNode, services: Services
) -> None:
    await some_history(services)
    head = await settled(node)
    before = {s.name: s for s in await status(node.store.pool)}
    assert before["projects"].lag == head and before["projects"].stored_version is None

    await catch_up(node.store, registry.get("projects"))

    after = {s.name: s for s in await status(node.store.pool)}
    assert (after["projects"].position, after["projects"].lag) == (head, 0)
    assert not after["projects"].stale


async def test_a_running_runner_follows_new_events_and_rebuilds_a_changed_projection(
    node: LogNode, services: Services, settings: Settings
) -> None:
    await node.store.pool.execute(
        "INSERT INTO projection_checkpoints (name, version, position) VALUES ('projects', 0, 0)"
    )
    await node.store.pool.execute("TRUNCATE projects")  # as if built by old code
    runner = ProjectionRunner(node.store, registry.DOMAIN, poll_interval=0.05)
    await runner.start()
    try:
        await some_history(services)
        head = await settled(node)
        for _ in range(200):
            states = await status(node.store.pool, registry.DOMAIN)
            if all(s.position >= head and not s.stale for s in states):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"runner did not catch up: {states}")
    finally:
        await runner.stop()
    assert len(await dump(node.store.pool, "projects")) == 1


async def applies(store: EventStore, projection: registry.Projection) -> tuple[int, int]:
    """(events read, events applied) by the runner catching `projection` up."""
    read = applied = 0
    while True:
        batch = await run_batch(store, projection, batch_size=50)
        read, applied = read + batch.read, applied + batch.applied
        if batch.read < 50:
            return read, applied


async def raw_message(store: EventStore, pid: uuid.UUID, content: str) -> RecordedEvent:
    """A message appended to the project's stream without the inline projections."""
    stream = project.stream_id(pid)
    recorded = await store.read_stream(stream)
    state = project.fold(store.decode(e) for e in recorded)
    posted = project.decide(
        state,
        project.PostMessage(
            message_id=uuid.uuid4(), role=MessageRole.USER, author="alice", content=content, at=AT
        ),
    )
    await store.append(stream, recorded[-1].version, posted, project_id=pid)
    return (await store.read_stream(stream))[-1]


async def test_the_runner_skips_what_was_applied_inline_and_applies_only_the_rest(
    node: LogNode, services: Services
) -> None:
    await some_history(services)
    pid = uuid.uuid4()
    created = project.decide(
        project.INITIAL,
        project.CreateProject(project_id=pid, name="raw", owner="o", phases=PLAN, at=AT),
    )
    await node.store.append(project.stream_id(pid), 0, created, project_id=pid)
    await settled(node)
    before = await dump_all(node.store.pool)

    counts = {p.name: await applies(node.store, p) for p in registry.DOMAIN}

    # Every event was read; only the two appended past the inline projections were applied.
    assert all(read > 0 for read, _ in counts.values())
    assert {name: applied for name, (_, applied) in counts.items()} == {
        "projects": len(created), "messages": 0, "jobs": 0, "phases": 0, "output": 0,
    }  # fmt: skip
    after = await dump_all(node.store.pool)
    assert [r for r in after["projects"] if r not in before["projects"]] == [
        r for r in after["projects"] if r["project_id"] == pid
    ]
    assert {k: v for k, v in after.items() if k != "projects"} == {
        k: v for k, v in before.items() if k != "projects"
    }
    assert {name: await applies(node.store, registry.get(name)) for name in counts} == {
        name: (0, 0) for name in counts
    }


async def _lock_waiters(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
    )


async def test_an_inline_apply_filling_a_gap_waits_for_the_runner_applying_it_and_applies_once(
    node: LogNode, services: Services
) -> None:
    """Two messages appended past the inline projections; the runner applies them in a
    transaction held open while a unit of work posts a third, whose inline apply must fill the
    same gap: it waits for the runner's lock, then finds the gap filled and applies only its
    own event. Each message counts once."""
    store = node.store
    state = await services.projects.create(ALICE, name="race")
    assert state.id is not None
    pid = state.id
    await raw_message(store, pid, "one")
    second = await raw_message(store, pid, "two")
    await settled(node)
    [second] = [e for e in await store.read_stream(second.stream_id) if e.version == second.version]
    projects = registry.get("projects")

    async with store.pool.acquire() as runner, runner.transaction():
        await projects.apply(runner, second, registry.live(projects))  # fills in "one" first
        posting = asyncio.create_task(services.projects.post_message(ALICE, pid, content="3"))
        async with asyncio.timeout(20):
            while not await _lock_waiters(store.pool):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert not posting.done()
    await posting

    version = second.version + 1
    row = await store.pool.fetchrow("SELECT * FROM projects WHERE project_id = $1", pid)
    assert (row["message_count"], row["version"]) == (3, version)
    for name in ("projects", "messages"):
        await catch_up(store, registry.get(name))
    row = await store.pool.fetchrow("SELECT * FROM projects WHERE project_id = $1", pid)
    assert (row["message_count"], row["version"]) == (3, version)
    thread = await services.queries.messages(ALICE, pid, limit=10)
    assert [(m["seq"], m["content"]) for m in thread["items"]] == [(1, "one"), (2, "two"), (3, "3")]


class Stop(Exception):
    pass


async def test_a_rebuild_that_fails_half_way_leaves_the_live_tables_as_they_were(
    node: LogNode, services: Services
) -> None:
    await some_history(services)
    await settled(node)
    live = await dump_all(node.store.pool)
    checkpoints = await node.store.pool.fetch("SELECT * FROM projection_checkpoints ORDER BY 1")

    def crash(progress: Progress) -> None:
        if progress.events:
            raise Stop

    for projection in registry.DOMAIN:
        with pytest.raises(Stop):
            await rebuild(node.store, projection, batch_size=2, progress=crash)

    assert await dump_all(node.store.pool) == live
    assert await node.store.pool.fetch("SELECT * FROM projection_checkpoints ORDER BY 1") == (
        checkpoints
    )
    for projection in registry.DOMAIN:
        await rebuild(node.store, projection)
    assert await dump_all(node.store.pool) == live
