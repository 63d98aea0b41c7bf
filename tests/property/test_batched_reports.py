"""The worker's outbox coalesces reports while a request is in flight: whatever the timing, the
job's log and output read model come out as they do when every report is its own request."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.bootstrap import LogNode
from helix.worker import reports
from helix.worker.outbox import Outbox
from helix.worker.protocol import Report

Client = TestClient[Any, Any]
PHASE = "build"
# Events whose number follows the number of requests, not what was reported.
PER_REQUEST = frozenset({"job.lease_renewed"})
# Fields that differ between any two jobs.
# What differs between two jobs however they were reported: their ids and clocks (a job's end
# says how long it ran).
OF_THE_JOB = frozenset({"at", "job_id", "lease_expires_at", "duration_s"})

line = st.text(st.characters(codec="utf-8", exclude_characters="\x00\n\r"), max_size=12)
output = st.tuples(
    st.just("output"),
    st.sampled_from(["stdout", "stderr"]),
    st.lists(line, min_size=1, max_size=700),
)
# Mostly output, as a phase makes it, with the other reports between.
step = st.one_of(
    output,
    output,
    output,
    st.tuples(st.just("progress"), st.integers(0, 100)),
    st.tuples(st.just("cost"), st.integers(0, 10_000)),
)


def reports_of(program: list[tuple[Any, ...]]) -> list[Report]:
    made: list[Report] = []
    for kind, *args in program:
        if kind == "output":
            made.append(reports.output(PHASE, args[0], args[1]))
        elif kind == "progress":
            made.append(reports.progress(args[0]))
        else:
            made.append(reports.cost(PHASE, args[0], 0.0))
    return made


async def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def running_job(client: Client, user: Any, worker: Any) -> tuple[str, int]:
    """A job of a fresh project claimed by a fresh worker, its phase started."""
    body = {"name": "p", "phases": [{"name": PHASE, "command": ["make"]}]}
    project = await ok(await client.post("/api/v1/projects", json=body, headers=user.headers), 201)
    await ok(await client.post(f"/api/v1/projects/{project['id']}/ready", headers=user.headers))
    await ok(
        await client.post(f"/api/v1/projects/{project['id']}/execute", headers=user.headers), 202
    )
    registered = await ok(
        await client.post(
            "/api/v1/workers/register", json={"capabilities": ["shell"]}, headers=worker.headers
        ),
        201,
    )
    claim = await ok(
        await client.post(
            f"/api/v1/workers/{registered['worker_id']}/claim", headers=worker.headers
        )
    )
    job_id, token = claim["job"]["id"], claim["lease"]["fencing_token"]
    await post(client, worker, job_id, token, [reports.phase_started(PHASE)])
    return job_id, token


async def post(client: Client, worker: Any, job_id: str, token: int, batch: list[Report]) -> None:
    body = {"fencing_token": token, "reports": batch}
    await ok(await client.post(f"/api/v1/jobs/{job_id}/reports", json=body, headers=worker.headers))


async def recorded(node: LogNode, client: Client, user: Any, job_id: str) -> tuple[Any, Any]:
    """The job's events from its phase's start on, output expanded to one entry per line, and
    its output read model."""
    flat: list[Any] = []
    events = await node.store.read_stream(f"job-{job_id}")
    started = next(i for i, e in enumerate(events) if e.type == "job.phase_started")
    for event in events[started:]:
        data = {k: v for k, v in event.data.items() if k not in OF_THE_JOB}
        if event.type in PER_REQUEST:
            continue
        if event.type == "job.phase_output":
            first = data.pop("first_line_no")
            lines = data.pop("lines")
            flat += [
                (data["stream"], data["attempt"], first + i, text) for i, text in enumerate(lines)
            ]
        else:
            flat.append((event.type, sorted(data.items(), key=str)))
    items: list[Any] = []
    after = 0
    while True:
        page = await ok(
            await client.get(
                f"/api/v1/jobs/{job_id}/output",
                params={"after": str(after), "limit": "1000"},
                headers=user.headers,
            )
        )
        items += [(x["line_no"], x["stream"], x["attempt"], x["line"]) for x in page["items"]]
        if not page["has_more"]:
            return flat, items
        after = items[-1][0]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    program=st.lists(step, min_size=2, max_size=25),
    pauses=st.lists(st.integers(0, 3), min_size=25, max_size=25),
    seed=st.integers(0, 2**32 - 1),
)
async def test_batched_reports_make_the_same_events_as_one_request_each(
    client: Client, node: LogNode, user: Any, worker: Any, program: list[tuple[Any, ...]],
    pauses: list[int], seed: int,
) -> None:  # fmt: skip
    made = reports_of(program)
    end = [reports.phase_completed(PHASE), reports.progress(100), reports.job_completed()]

    one_by_one, token = await running_job(client, user, worker)
    for report in made:
        await post(client, worker, one_by_one, token, [report])
    await post(client, worker, one_by_one, token, end)

    batched, batched_token = await running_job(client, user, worker)
    sizes: list[int] = []
    rng = random.Random(seed)

    async def slow_post(batch: list[Report]) -> None:
        sizes.append(len(batch))
        for _ in range(rng.randint(0, 3)):  # answers late: more reports are put meanwhile
            await asyncio.sleep(0)
        await post(client, worker, batched, batched_token, batch)

    outbox = Outbox(slow_post)
    for report, pause in zip(made, pauses, strict=False):
        await outbox.put([report])
        for _ in range(pause):
            await asyncio.sleep(0)
    await outbox.send(end)

    assert await recorded(node, client, user, batched) == await recorded(
        node, client, user, one_by_one
    )
    assert len(sizes) <= len(made) + 1
