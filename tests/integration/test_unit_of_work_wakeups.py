"""The unit of work sends no NOTIFY inside its transaction, and claimers are still woken."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import job, project
from helix.domain.project import PhaseSpec
from helix.services import Caller, Services, Tx

ALICE = Caller(user_id="alice-id", name="alice", actor="user:alice-id")
PLAN = (PhaseSpec(name="build", command=("make",)),)


async def ready_project(services: Services) -> uuid.UUID:
    state = await services.projects.create(ALICE, name="demo", phases=PLAN)
    assert state.id is not None
    await services.projects.mark_ready(ALICE, state.id)
    return state.id


async def queue_a_job(tx: Tx, project_id: uuid.UUID) -> None:
    job_id = uuid.uuid4()
    state = await tx.decide_project(project_id, project.StartRun(job_id=job_id, at=tx.at))
    queued = job.QueueJob(
        job_id=job_id,
        project_id=project_id,
        owner=state.owner,
        phases=state.phases,
        requested_by=tx.caller.actor,
        max_attempts=1,
        at=tx.at,
    )
    await tx.decide_job(job_id, queued)


async def test_queueing_a_job_sends_no_notify_inside_the_append_transaction(
    node: LogNode, settings: Settings
) -> None:
    services = Services.build(node.store, settings)
    project_id = await ready_project(services)
    heard: list[tuple[int, str]] = []
    probe_seen = asyncio.Event()

    def on_notify(_conn: Any, pid: int, _channel: str, payload: str) -> None:
        heard.append((pid, payload))
        if payload == "probe":
            probe_seen.set()

    listener = await node.connector("test-listen")()
    appender = await node.connector("test-append")()
    try:
        await listener.add_listener("helix_jobs", on_notify)
        async with appender.transaction():
            at = services.projects.writer.now()
            await queue_a_job(Tx(node.store, appender, ALICE, at), project_id)
        # A session's notifications arrive in the order it sent them: once this one is heard,
        # any the append transaction sent at its commit has been heard too.
        await appender.execute("SELECT pg_notify('helix_jobs', 'probe')")
        await asyncio.wait_for(probe_seen.wait(), timeout=30)

        assert [p for pid, p in heard if pid == appender.get_server_pid()] == ["probe"]
    finally:
        await appender.close()
        await listener.close()


async def test_a_committed_job_wakes_the_claimers_after_the_commit(
    node: LogNode, settings: Settings
) -> None:
    services = Services.build(node.store, settings)
    project_id = await ready_project(services)
    heard: asyncio.Queue[str] = asyncio.Queue()

    def on_notify(_conn: Any, _pid: int, channel: str, _payload: str) -> None:
        heard.put_nowait(channel)

    listener = await node.connector("test-listen")()
    try:
        await listener.add_listener("helix_jobs", on_notify)

        await services.projects.execute(ALICE, project_id)

        assert await asyncio.wait_for(heard.get(), timeout=30) == "helix_jobs"
    finally:
        await listener.close()
