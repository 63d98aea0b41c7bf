"""One-call runs, waiting for a job's end, and a follow-up message that starts a run, over HTTP.

No worker runs here: the jobs stay queued unless a test moves them (a worker's end-to-end run
of a quick action is in test_worker_e2e.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from helix.appkeys import SERVICES
from helix.bootstrap import LogNode
from tests.integration.api.test_projects_api import error_of, event_count

Client = TestClient[Any, Any]
MAX_WAIT = 5
PHASES = [{"name": "only", "command": ["true"]}]


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client(max_wait_seconds=float(MAX_WAIT))


async def quick(client: Client, who: Any, **body: Any) -> dict[str, Any]:
    resp = await client.post(
        "/api/v1/quick-action", json={"phases": PHASES, **body}, headers=who.headers
    )
    assert resp.status == 202, await resp.text()
    return dict(await resp.json())


async def get(client: Client, who: Any, path: str) -> Any:
    resp = await client.get(path, headers=who.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_quick_action_creates_a_project_from_its_prompt_and_runs_it(
    client: Client, user: Any, admin: Any
) -> None:
    prompt = "Write a parser\n  for   the config format, with tests"
    resp = await client.post(
        "/api/v1/quick-action",
        json={"prompt": prompt, "phases": PHASES, "model": "m-1", "metadata": {"chat": "c-7"}},
        headers=user.headers,
    )
    assert resp.status == 202, await resp.text()
    run = await resp.json()
    fields = {"project_id", "job_id", "status", "priority", "project_status", "stream_url"}
    assert set(run) == fields | {"warnings"}
    assert (run["status"], run["project_status"], run["priority"]) == (
        "queued",
        "running",
        "normal",
    )
    assert run["stream_url"] == f"/api/v1/stream/{run['job_id']}"
    assert resp.headers["Location"] == f"/api/v1/jobs/{run['job_id']}"

    project = await get(client, user, f"/api/v1/projects/{run['project_id']}")
    assert project["name"] == "Write a parser for the config format, with tests"
    assert (project["description"], project["status"]) == (prompt, "running")
    assert project["latest_job_id"] == run["job_id"]
    thread = await get(client, user, f"/api/v1/projects/{run['project_id']}/messages")
    assert [(m["role"], m["content"]) for m in thread["items"]] == [("user", prompt)]
    shown = await get(client, user, f"/api/v1/jobs/{run['job_id']}")
    assert (shown["model"], [p["name"] for p in shown["phases"]]) == ("m-1", ["only"])
    events = await get(client, admin, f"/api/v1/events?project_id={run['project_id']}")
    types = [e["type"] for e in events["items"]]
    assert types[0] == "project.created" and "job.queued" in types
    assert all(e["metadata"]["client"] == {"chat": "c-7"} for e in events["items"])


async def test_a_quick_action_names_its_project_within_bounds_or_as_told(
    client: Client, user: Any
) -> None:
    long_prompt = "word " * 500
    run = await quick(client, user, prompt=long_prompt)
    derived = await get(client, user, f"/api/v1/projects/{run['project_id']}")
    assert derived["name"].endswith("…") and len(derived["name"]) <= 60
    assert derived["description"] == long_prompt
    named = await quick(client, user, prompt="do it", name="My run")
    assert (await get(client, user, f"/api/v1/projects/{named['project_id']}"))["name"] == "My run"


async def test_a_quick_action_is_idempotent_with_a_key(client: Client, user: Any) -> None:
    headers = {**user.headers, "Idempotency-Key": "qa-1"}
    body = {"prompt": "once only", "phases": PHASES}
    first = await client.post("/api/v1/quick-action", json=body, headers=headers)
    again = await client.post("/api/v1/quick-action", json=body, headers=headers)
    assert (first.status, again.status) == (202, 202)
    assert (await again.json())["job_id"] == (await first.json())["job_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len((await get(client, user, "/api/v1/projects"))["items"]) == 1
    other = await client.post(
        "/api/v1/quick-action", json={**body, "prompt": "another"}, headers=headers
    )
    await error_of(other, 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phases": PHASES}, "prompt"),
        ({"prompt": "", "phases": PHASES}, "prompt"),
        ({"prompt": "   ", "phases": PHASES}, "prompt"),
        ({"prompt": "x", "phases": []}, "phases"),
        ({"prompt": "x", "phases": PHASES, "template": "ai-development"}, "template"),
        ({"prompt": "x", "phases": PHASES, "metadata": ["not", "an", "object"]}, "metadata"),
        ({"prompt": "x", "phases": PHASES, "metadata": {"k": "v" * 9000}}, "metadata"),
        ({"prompt": "x", "phases": PHASES, "name": "n" * 201}, "name"),
        ({"prompt": "x", "phases": PHASES, "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_quick_action_is_a_422_and_leaves_nothing(
    client: Client, user: Any, node: LogNode, body: dict[str, Any], field: str
) -> None:
    before = await event_count(node)
    resp = await client.post("/api/v1/quick-action", json=body, headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == field
    assert await event_count(node) == before
    assert (await get(client, user, "/api/v1/projects"))["items"] == []


async def test_waiting_for_a_job_answers_at_its_end_woken_by_the_log(
    client: Client, user: Any
) -> None:
    run = await quick(client, user, prompt="wait for me")
    url = f"/api/v1/jobs/{run['job_id']}?wait={MAX_WAIT}"
    waiting = asyncio.create_task(get(client, user, url))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    resp = await client.post(f"/api/v1/jobs/{run['job_id']}/cancel", headers=user.headers)
    assert resp.status == 200, await resp.text()
    ended = await waiting
    assert ended["status"] == "cancelled"
    assert 0 < ended["waited_seconds"] < MAX_WAIT  # it answered at the end, not at the deadline

    again = await get(client, user, url)  # a job that is over answers at once
    assert again["status"] == "cancelled" and again["waited_seconds"] < MAX_WAIT


async def test_waiting_for_a_job_that_does_not_end_answers_after_the_wait(
    client: Client, user: Any
) -> None:
    run = await quick(client, user, prompt="never runs")
    shown = await get(client, user, f"/api/v1/jobs/{run['job_id']}?wait=1")
    assert shown["status"] == "queued"
    assert shown["waited_seconds"] >= 1
    assert shown["phases"][0]["name"] == "only"


@pytest.mark.parametrize("wait", [str(MAX_WAIT + 1), "-1", "soon", "1.5"])
async def test_a_wait_beyond_the_maximum_or_not_a_number_is_a_422(
    client: Client, user: Any, wait: str
) -> None:
    run = await quick(client, user, prompt="x")
    resp = await client.get(f"/api/v1/jobs/{run['job_id']}?wait={wait}", headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == "wait"


async def test_waiting_for_another_users_job_is_a_404(
    client: Client, user: Any, other_user: Any
) -> None:
    run = await quick(client, user, prompt="mine")
    resp = await client.get(f"/api/v1/jobs/{run['job_id']}?wait=1", headers=other_user.headers)
    await error_of(resp, 404)


async def test_a_waiting_request_answers_at_once_when_the_server_closes(
    client: Client, user: Any
) -> None:
    run = await quick(client, user, prompt="closing")
    url = f"/api/v1/jobs/{run['job_id']}?wait={MAX_WAIT}"
    waiting = asyncio.create_task(get(client, user, url))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    client.app[SERVICES].queries.stop_waiting()  # what the server's shutdown does first
    shown = await waiting
    assert shown["status"] == "queued" and shown["waited_seconds"] < MAX_WAIT


async def test_a_message_with_run_starts_a_new_run_of_a_finished_project(
    client: Client, user: Any, node: LogNode
) -> None:
    run = await quick(client, user, prompt="first")
    messages = f"/api/v1/projects/{run['project_id']}/messages"
    before = await event_count(node)
    busy = await client.post(messages, json={"content": "again", "run": True}, headers=user.headers)
    assert (await error_of(busy, 409))["details"]["current_state"] == "running"
    assert await event_count(node) == before  # nor was the message posted
    stray = await client.post(messages, json={"content": "x", "model": "m"}, headers=user.headers)
    assert (await error_of(stray, 422))["details"]["field"] == "model"

    resp = await client.post(f"/api/v1/projects/{run['project_id']}/cancel", headers=user.headers)
    assert resp.status == 200, await resp.text()
    resp = await client.post(
        messages, json={"content": "now with tests", "run": True, "model": "m-2"},
        headers=user.headers,
    )  # fmt: skip
    assert resp.status == 201, await resp.text()
    posted = await resp.json()
    assert posted["content"] == "now with tests" and posted["project_status"] == "running"
    assert posted["job_id"] != run["job_id"]
    assert posted["stream_url"] == f"/api/v1/stream/{posted['job_id']}"
    shown = await get(client, user, f"/api/v1/jobs/{posted['job_id']}")
    assert (shown["status"], shown["model"]) == ("queued", "m-2")
    thread = await get(client, user, messages)
    assert [m["content"] for m in thread["items"]] == ["first", "now with tests"]
