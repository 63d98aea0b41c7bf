"""Fixtures for audit tests (beside the shared ones of tests/integration/fixtures.py): a second
fresh database, and `history`, which drives realistic projects and jobs through the services.

    async def test_something(client, user, history):
        made = await history(user)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import job
from helix.domain.job import OutputStream
from helix.domain.project import PhaseSpec
from helix.services import Caller as ServiceCaller
from helix.services import Services
from tests.integration.fixtures import Caller
from tests.support import FreshDatabases, RegisteredWorker, settled

PLAN = (PhaseSpec(name="plan"), PhaseSpec(name="build", command=("make",)))


@pytest.fixture
async def second_database_url(fresh_databases: FreshDatabases) -> AsyncIterator[str]:
    """Another fresh, migrated database, beside `database_url`."""
    async with fresh_databases.database() as url:
        yield url


settle = settled  # the name the audit tests knew it by


@attrs.frozen(kw_only=True)
class Made:
    """What `history` made for one owner."""

    caller: ServiceCaller
    finished_project: uuid.UUID
    finished_job: uuid.UUID
    cancelled_project: uuid.UUID
    cancelled_job: uuid.UUID


def service_caller(who: Caller, *, source: str = "198.51.100.7") -> ServiceCaller:
    """The service-layer caller of an API caller, calling from `source`."""
    return attrs.evolve(who.service, source=source)


async def make_history(node: LogNode, who: ServiceCaller) -> Made:
    """A finished two-phase run with output and cost, and a cancelled run, for one owner."""
    services = Services.build(node.store, Settings())
    projects = services.projects
    done = await projects.create(who, name="finished", description="d", phases=PLAN)
    assert done.id is not None
    await projects.post_message(who, done.id, content="let us build it")
    await projects.mark_ready(who, done.id)
    run = await projects.execute(who, done.id, model="m1")
    assert run.job.id is not None
    jid = run.job.id
    worker = await RegisteredWorker.register(services.workers)
    token = (await worker.claim_job(jid)).fencing_token
    now = services.projects.writer.now
    for phase in ("plan", "build"):
        await worker.report(jid, job.StartPhase(fencing_token=token, phase=phase, at=now()))
        await worker.report(
            jid,
            job.RecordOutput(
                fencing_token=token,
                phase=phase,
                stream=OutputStream.STDOUT,
                lines=(f"{phase} 1", f"{phase} 2"),
                at=now(),
            ),
        )
        await worker.report(
            jid, job.RecordCost(fencing_token=token, phase=phase, tokens=10, usd=0.25, at=now())
        )
        await worker.report(jid, job.CompletePhase(fencing_token=token, phase=phase, at=now()))
    await worker.report(jid, job.CompleteJob(fencing_token=token, at=now()))
    other = await projects.create(who, name="cancelled", phases=PLAN[:1])
    assert other.id is not None
    await projects.mark_ready(who, other.id)
    cancelled = await projects.execute(who, other.id)
    assert cancelled.job.id is not None
    await projects.cancel(who, other.id, "changed my mind")
    return Made(
        caller=who,
        finished_project=done.id,
        finished_job=jid,
        cancelled_project=other.id,
        cancelled_job=cancelled.job.id,
    )


@pytest.fixture
def history(node: LogNode) -> Callable[..., Awaitable[Made]]:
    """`await history(api_caller)`: that user's projects and jobs, made through the services."""

    async def make(who: Any, *, source: str = "198.51.100.7") -> Made:
        made = await make_history(node, service_caller(who, source=source))
        assert node.pool is not None
        await settled(node)
        return made

    return make
