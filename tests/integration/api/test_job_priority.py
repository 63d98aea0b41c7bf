"""A run's priority over HTTP: given on execute, quick action and a message that runs, shown in
the job views, filtered on in the job list, and refused when it is not one of the four."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from tests.integration.api.test_projects_api import error_of, event_count, ready

Client = TestClient[Any, Any]
PHASES = [{"name": "only", "command": ["true"]}]


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client()


async def get(client: Client, who: Any, path: str) -> Any:
    resp = await client.get(path, headers=who.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post(client: Client, who: Any, path: str, body: Any, status: int) -> Any:
    resp = await client.post(path, json=body, headers=who.headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_each_way_to_run_takes_a_priority_and_the_job_views_show_it(
    client: Client, user: Any
) -> None:
    project_id = await ready(client, user)
    executed = await post(
        client, user, f"/api/v1/projects/{project_id}/execute", {"priority": "high"}, 202
    )
    quick = await post(
        client, user, "/api/v1/quick-action", {"prompt": "p", "phases": PHASES, "priority": "low"},
        202,
    )  # fmt: skip
    plain = await post(client, user, "/api/v1/quick-action", {"prompt": "q", "phases": PHASES}, 202)
    await post(client, user, f"/api/v1/projects/{quick['project_id']}/cancel", {}, 200)
    again = await post(
        client, user, f"/api/v1/projects/{quick['project_id']}/messages",
        {"content": "again", "run": True, "priority": "critical"}, 201,
    )  # fmt: skip

    assert (executed["priority"], quick["priority"], plain["priority"]) == ("high", "low", "normal")
    for job_id, priority in [
        (executed["job_id"], "high"), (quick["job_id"], "low"), (plain["job_id"], "normal"),
        (again["job_id"], "critical"),
    ]:  # fmt: skip
        assert (await get(client, user, f"/api/v1/jobs/{job_id}"))["priority"] == priority
        events = await get(client, user, f"/api/v1/events?stream_id=job-{job_id}")
        (queued,) = [e for e in events["items"] if e["type"] == "job.queued"]
        assert queued["data"]["priority"] == priority
        position = events["items"][-1]["position"]
        past = await get(client, user, f"/api/v1/jobs/{job_id}?as_of={position}")
        assert past["priority"] == priority
    for priority, expected in [("high", executed), ("low", quick), ("critical", again)]:
        listed = await get(client, user, f"/api/v1/jobs?priority={priority}")
        assert [j["id"] for j in listed["items"]] == [expected["job_id"]]
    everything = await get(client, user, "/api/v1/jobs")
    assert len(everything["items"]) == 4


async def test_a_priority_that_is_not_one_of_the_four_is_refused_and_changes_nothing(
    client: Client, user: Any, node: LogNode
) -> None:
    project_id = await ready(client, user)
    before = await event_count(node)
    for bad in ("urgent", "", 3, None, ["high"], "HIGH"):
        resp = await client.post(
            f"/api/v1/projects/{project_id}/execute", json={"priority": bad}, headers=user.headers
        )
        assert (await error_of(resp, 422))["details"]["field"] == "priority"
        resp = await client.post(
            "/api/v1/quick-action",
            json={"prompt": "p", "phases": PHASES, "priority": bad},
            headers=user.headers,
        )
        assert (await error_of(resp, 422))["details"]["field"] == "priority"
    stray = await client.post(
        f"/api/v1/projects/{project_id}/messages",
        json={"content": "x", "priority": "high"},
        headers=user.headers,
    )
    assert (await error_of(stray, 422))["details"]["field"] == "priority"
    assert await event_count(node) == before
    listed = await client.get("/api/v1/jobs?priority=urgent", headers=user.headers)
    assert (await error_of(listed, 422))["details"]["field"] == "priority"
