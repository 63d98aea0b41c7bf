"""The runner racing the inline projections: messages posted through the unit of work (applied
inline) and appended past it (left to the runner, or to the next inline apply to fill in), with
the runner catching up all the while. Whoever applies an event, it counts once, in order."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import project
from helix.domain.project import MessageRole
from helix.services import Caller, ProjectService, Writer
from projections import registry
from projections.rebuild import rebuild
from projections.runner import catch_up, run_batch
from tests.support import settled

ALICE = Caller(user_id="alice-id", name="alice", actor="user:alice-id")
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RACED = ("projects", "messages")


async def post_raw(node: LogNode, pid: uuid.UUID, content: str) -> None:
    store = node.store
    stream = project.stream_id(pid)
    recorded = await store.read_stream(stream)
    state = project.fold(store.decode(e) for e in recorded)
    command = project.PostMessage(
        message_id=uuid.uuid4(), role=MessageRole.USER, author="alice", content=content, at=AT
    )
    await store.append(stream, recorded[-1].version, project.decide(state, command), project_id=pid)


async def dump(node: LogNode, pid: uuid.UUID) -> tuple[object, ...]:
    pool = node.store.pool
    row = await pool.fetchrow("SELECT * FROM projects WHERE project_id = $1", pid)
    thread = await pool.fetch(
        "SELECT seq, content, version FROM project_messages WHERE project_id = $1 ORDER BY seq",
        pid,
    )
    return dict(row), [tuple(r) for r in thread]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# True: posted through the unit of work (applied inline); False: appended past it.
@given(inline=st.lists(st.booleans(), min_size=1, max_size=10))
async def test_messages_count_once_in_order_whoever_applies_them(
    node: LogNode, inline: list[bool]
) -> None:
    projects = ProjectService(Writer(node.store), Settings())
    state = await projects.create(ALICE, name="race")
    assert state.id is not None
    pid = state.id
    done = asyncio.Event()

    async def runner() -> None:
        while not done.is_set():
            for name in RACED:
                await catch_up(node.store, registry.get(name), batch_size=3)
            await asyncio.sleep(0)

    racing = asyncio.create_task(runner())
    try:
        for n, through_unit in enumerate(inline):
            if through_unit:
                await projects.post_message(ALICE, pid, content=f"m{n}")
            else:
                await post_raw(node, pid, f"m{n}")
    finally:
        done.set()
        await racing
    await settled(node)
    for name in RACED:
        await catch_up(node.store, registry.get(name))

    row, thread = await dump(node, pid)
    recorded = await node.store.read_stream(project.stream_id(pid))
    posted = [e for e in recorded if e.type == "project.message_posted"]
    assert (row["message_count"], row["version"]) == (len(inline), recorded[-1].version)
    assert thread == [(seq, e.data["content"], e.version) for seq, e in enumerate(posted, start=1)]
    # Nothing is left for the runner, and a rebuild gives the same rows.
    for name in RACED:
        batch = await run_batch(node.store, registry.get(name))
        assert batch.applied == 0
        await rebuild(node.store, registry.get(name))
    assert await dump(node, pid) == (row, thread)
