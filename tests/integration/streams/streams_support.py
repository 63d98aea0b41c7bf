"""Helpers of the live-stream tests: services that create projects and jobs, and reading
server-sent events from a test client's response."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from helix.client.sse import Message, Parser
from helix.domain import job
from helix.domain.project import PhaseSpec
from helix.services import Caller as ServiceCaller
from helix.services import Services
from helix.streams import Tailer
from tests.integration.fixtures import Caller
from tests.support import RegisteredWorker, settled

PLAN = (PhaseSpec(name="plan"), PhaseSpec(name="build"))
WITHIN = 5.0  # seconds: "within a few seconds"


settled_head = settled  # the name the stream tests knew it by


async def tailer_at(tailer: Tailer, position: int) -> None:
    for _ in range(2000):
        if tailer.position >= position:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the tailer did not reach {position}")


def as_service_caller(caller: Caller) -> ServiceCaller:
    return caller.service


async def new_project(services: Services, owner: Any, name: str = "demo") -> uuid.UUID:
    state = await services.projects.create(as_service_caller(owner), name=name, phases=PLAN)
    assert state.id is not None
    return state.id


async def queued_job(services: Services, owner: Any, project_id: uuid.UUID) -> uuid.UUID:
    who = as_service_caller(owner)
    await services.projects.mark_ready(who, project_id)
    execution = await services.projects.execute(who, project_id)
    assert execution.job.id is not None
    return execution.job.id


async def run_job(services: Services, job_id: uuid.UUID, *, finish: bool = True) -> None:
    worker = await RegisteredWorker.register(services.workers)
    token = (await worker.claim_job(job_id)).fencing_token
    now = services.jobs.writer.now()
    steps: list[job.WorkerReport] = []
    for phase in ("plan", "build"):
        steps += [
            job.StartPhase(fencing_token=token, phase=phase, at=now),
            job.RecordOutput(
                fencing_token=token,
                phase=phase,
                stream=job.OutputStream.STDOUT,
                lines=(f"{phase} ok",),
                at=now,
            ),
            job.CompletePhase(fencing_token=token, phase=phase, at=now),
        ]
    if finish:
        steps.append(job.CompleteJob(fencing_token=token, at=now))
    await worker.report_each(job_id, steps)


class EventStream:
    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp
        self.parser = Parser()
        self.comments = 0

    async def next(self, timeout: float = 20, *, comment: bool = False) -> Message | None:
        """The next message (or with `comment`, the next comment too: then None); None when
        the server ended the stream."""
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.resp.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments += 1
                    if comment:
                        return None
                message = self.parser.feed_line(line)
                if message is not None:
                    return message

    async def until(self, stop: Callable[[list[Message]], bool]) -> list[Message]:
        got: list[Message] = []
        while not stop(got):
            message = await self.next()
            if message is None:
                break
            got.append(message)
        return got

    async def events(self, count: int) -> list[Message]:
        got = await self.until(lambda m: len(events_of(m)) >= count)
        return got


def events_of(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.event not in ("caught_up", "done")]


def positions(messages: list[Message]) -> list[int]:
    return [int(m.id) for m in events_of(messages) if m.id is not None]


def data(message: Message) -> Any:
    return json.loads(message.data)


async def open_sse(client: TestClient[Any, Any], path: str, **kwargs: Any) -> EventStream:
    resp = await client.get(path, **kwargs)
    assert resp.status == 200, await resp.text()
    stream = EventStream(resp)
    first = await stream.next(WITHIN)
    assert first is not None and first.event == "caught_up"
    return stream


async def ended(stream: EventStream, within: float = WITHIN) -> list[Any]:
    """Every message until the server ends the stream (failing if it does not in time)."""
    got = []
    async with asyncio.timeout(within):
        while (message := await stream.next(within)) is not None:
            got.append(message)
    return got


def told_why(stream: EventStream, messages: list[Any], code: str) -> str:
    """The message of the stream's last event, an `error` in the envelope form; the
    envelope names the stream's own request."""
    last = messages[-1]
    body = data(last)
    assert (last.event, last.id) == ("error", None)  # no id: a resume starts where it was
    assert body["error"]["code"] == code
    assert body["request_id"] == stream.resp.headers["X-Request-ID"]
    return str(body["error"]["message"])
