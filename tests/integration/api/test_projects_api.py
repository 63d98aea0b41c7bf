"""The project routes over HTTP: success, bad input, another user's project, illegal moves."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import job
from helix.services import Services
from tests.support import RegisteredWorker

Client = TestClient[Any, Any]
PLAN = [{"name": "plan"}, {"name": "build", "command": ["make", "all"], "timeout_s": 60}]


async def event_count(node: LogNode) -> int:
    assert node.pool is not None
    return int(await node.pool.fetchval("SELECT count(*) FROM events"))


async def create(client: Client, who: Any, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/projects", json={"name": "demo", **body}, headers=who.headers)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def ready(client: Client, who: Any) -> str:
    project = await create(client, who, phases=PLAN)
    resp = await client.post(f"/api/v1/projects/{project['id']}/ready", headers=who.headers)
    assert resp.status == 200, await resp.text()
    return str(project["id"])


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["request_id"]
    return dict(body["error"])


# --- create -----------------------------------------------------------------------------------


async def test_creating_a_project_returns_it_and_records_who_asked(
    client: Client, user: Any, node: LogNode
) -> None:
    resp = await client.post(
        "/api/v1/projects",
        json={"name": "parser", "description": "LL(1)", "project_type": "lib", "phases": PLAN},
        headers={**user.headers, "X-Request-ID": "req-123"},
    )

    assert resp.status == 201
    body = await resp.json()
    assert resp.headers["Location"] == f"/api/v1/projects/{body['id']}"
    assert (body["name"], body["status"], body["project_type"]) == ("parser", "draft", "lib")
    assert body["owner"] == user.user_id
    assert [p["name"] for p in body["phases"]] == ["plan", "build"]
    assert body["phases"][1]["capabilities"] == ["shell"]
    assert body["created_at"].endswith("Z")
    events = await node.store.read_stream(f"project-{body['id']}")
    assert [e.type for e in events] == ["project.created", "project.phases_planned"]
    assert events[0].metadata["actor"].startswith("key:")  # the caller used an API key
    assert events[0].metadata["request_id"] == "req-123"
    assert events[0].metadata["source"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({}, "name", 422),
        ({"name": ""}, "name", 422),
        ({"name": 5}, "name", 422),
        ({"name": "x", "colour": "red"}, "colour", 422),
        ({"name": "x", "phases": [{"name": "a"}, {"name": "a"}]}, "phases[1].name", 422),
        ({"name": "x", "phases": [{"name": "a", "timeout_s": -1}]}, "phases[0].timeout_s", 422),
        ({"name": "x", "phases": [{"command": ["ls"]}]}, "phases[0].name", 422),
    ],
)
async def test_a_bad_project_is_refused_naming_the_field_and_appends_nothing(
    client: Client, user: Any, node: LogNode, body: dict[str, Any], field: str, status: int
) -> None:
    before = await event_count(node)
    resp = await client.post("/api/v1/projects", json=body, headers=user.headers)
    error = await error_of(resp, status)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["field"] == field
    assert await event_count(node) == before


async def test_a_body_that_is_not_json_is_a_400(client: Client, user: Any) -> None:
    resp = await client.post(
        "/api/v1/projects",
        data=b"{nope",
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert (await error_of(resp, 400))["code"] == "VALIDATION_ERROR"


async def test_creating_beyond_the_project_limit_is_a_429_with_the_limit(
    make_client: Any, make_caller: Any
) -> None:
    client = await make_client(max_projects_per_user=1)
    alice = await make_caller("user")
    await create(client, alice)
    resp = await client.post("/api/v1/projects", json={"name": "two"}, headers=alice.headers)
    error = await error_of(resp, 429)
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    assert error["details"]["limit"] == 1
    assert "at most 1 projects" in error["message"]


async def test_project_routes_need_credentials(client: Client) -> None:
    assert (await client.post("/api/v1/projects", json={"name": "x"})).status == 401
    assert (await client.get("/api/v1/projects")).status == 401
    assert (await client.get(f"/api/v1/projects/{uuid.uuid4()}/status")).status == 401


async def test_auditors_read_everything_but_cannot_write(
    client: Client, user: Any, auditor: Any
) -> None:
    project = await create(client, user)
    resp = await client.get(f"/api/v1/projects/{project['id']}", headers=auditor.headers)
    assert resp.status == 200
    assert (
        await client.post("/api/v1/projects", json={"name": "x"}, headers=auditor.headers)
    ).status == 403
    resp = await client.post(f"/api/v1/projects/{project['id']}/ready", headers=auditor.headers)
    assert (await error_of(resp, 403))["code"] == "FORBIDDEN"


# --- list and get -----------------------------------------------------------------------------


async def test_listing_filters_by_status_and_type_and_pages_with_a_total(
    client: Client, user: Any, other_user: Any, admin: Any
) -> None:
    for n in range(3):
        await create(client, user, name=f"web {n}", project_type="web")
    await ready(client, user)
    await create(client, other_user, name="theirs")

    resp = await client.get(
        "/api/v1/projects?project_type=web&limit=2&offset=1", headers=user.headers
    )
    assert resp.status == 200
    page = await resp.json()
    assert (len(page["items"]), page["has_more"], page["next"]) == (2, False, None)
    assert "X-Helix-Position" in resp.headers
    ready_only = await (
        await client.get("/api/v1/projects?status=ready", headers=user.headers)
    ).json()
    assert [p["status"] for p in ready_only["items"]] == ["ready"]
    mine = await (await client.get("/api/v1/projects", headers=user.headers)).json()
    assert len(mine["items"]) == 4
    everyone = await (await client.get("/api/v1/projects", headers=admin.headers)).json()
    assert len(everyone["items"]) == 5
    first = await (await client.get("/api/v1/projects?limit=3", headers=admin.headers)).json()
    assert (len(first["items"]), first["next"]) == (3, "/api/v1/projects?limit=3&offset=3")
    rest = await (await client.get(first["next"], headers=admin.headers)).json()
    assert (len(rest["items"]), rest["has_more"]) == (2, False)
    assert {p["id"] for p in first["items"] + rest["items"]} == {p["id"] for p in everyone["items"]}


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=sleeping", "status"), ("limit=0", "limit"), ("offset=-1", "offset"),
     ("archived=maybe", "archived"), ("limit=abc", "limit")],
)  # fmt: skip
async def test_listing_with_a_bad_filter_is_a_422_naming_it(
    client: Client, user: Any, query: str, field: str
) -> None:
    resp = await client.get(f"/api/v1/projects?{query}", headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == field


async def test_another_users_project_is_not_found_on_every_route(
    client: Client, user: Any, other_user: Any, node: LogNode
) -> None:
    project_id = await ready(client, user)
    base = f"/api/v1/projects/{project_id}"
    before = await event_count(node)
    for method, path in [
        ("GET", base), ("PATCH", base), ("DELETE", base), ("POST", f"{base}/ready"),
        ("POST", f"{base}/execute"), ("POST", f"{base}/pause"), ("POST", f"{base}/resume"),
        ("POST", f"{base}/cancel"), ("GET", f"{base}/status"), ("GET", f"{base}/history"),
        ("POST", f"{base}/unarchive"),
    ]:  # fmt: skip
        body = {"name": "mine now"} if method == "PATCH" else None
        resp = await client.request(method, path, json=body, headers=other_user.headers)
        error = await error_of(resp, 404)
        assert error["code"] == "NOT_FOUND", (method, path)
    assert await event_count(node) == before
    resp = await client.get("/api/v1/projects/not-a-uuid", headers=user.headers)
    assert (await error_of(resp, 404))["code"] == "NOT_FOUND"


async def test_a_project_shows_its_phases_current_phase_and_latest_job(
    client: Client, user: Any
) -> None:
    project_id = await ready(client, user)
    resp = await client.get(f"/api/v1/projects/{project_id}", headers=user.headers)
    body = await resp.json()
    assert (body["status"], body["latest_job"], body["current_phase"]) == ("ready", None, None)

    run = await (
        await client.post(f"/api/v1/projects/{project_id}/execute", headers=user.headers)
    ).json()
    body = await (await client.get(f"/api/v1/projects/{project_id}", headers=user.headers)).json()
    assert body["status"] == "running"
    assert body["latest_job"]["id"] == run["job_id"]
    assert body["latest_job"]["status"] == "queued"
    assert body["current_phase"] == "plan"


# --- update and archive -----------------------------------------------------------------------


async def test_patching_changes_only_the_given_fields_and_can_replan(
    client: Client, user: Any
) -> None:
    project = await create(client, user, description="old")
    resp = await client.patch(
        f"/api/v1/projects/{project['id']}",
        json={"name": "renamed", "phases": [{"name": "only"}]},
        headers=user.headers,
    )
    assert resp.status == 200
    body = await resp.json()
    assert (body["name"], body["description"]) == ("renamed", "old")
    assert [p["name"] for p in body["phases"]] == ["only"]


async def test_patching_with_bad_input_is_a_422_and_appends_nothing(
    client: Client, user: Any, node: LogNode
) -> None:
    project = await create(client, user)
    before = await event_count(node)
    resp = await client.patch(
        f"/api/v1/projects/{project['id']}", json={"name": "ok", "phases": []}, headers=user.headers
    )
    assert (await error_of(resp, 422))["details"]["field"] == "phases"
    assert await event_count(node) == before  # the rename rolled back with the bad plan


async def test_archiving_hides_a_project_from_the_listing_but_keeps_it(
    client: Client, user: Any
) -> None:
    project = await create(client, user)
    resp = await client.delete(f"/api/v1/projects/{project['id']}", headers=user.headers)
    assert resp.status == 200
    assert (await resp.json())["archived"] is True
    listing = await (await client.get("/api/v1/projects", headers=user.headers)).json()
    assert listing["items"] == []
    archived = await (
        await client.get("/api/v1/projects?archived=true", headers=user.headers)
    ).json()
    assert [p["id"] for p in archived["items"]] == [project["id"]]
    resp = await client.patch(
        f"/api/v1/projects/{project['id']}", json={"name": "again"}, headers=user.headers
    )
    error = await error_of(resp, 409)
    assert error["details"]["reason"] == "archived"


async def test_unarchiving_brings_a_project_back_as_it_was(
    client: Client, user: Any, node: LogNode
) -> None:
    project_id = await ready(client, user)
    base = f"/api/v1/projects/{project_id}"
    await client.delete(base, headers=user.headers)

    resp = await client.post(f"{base}/unarchive", headers=user.headers)

    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["archived"], body["status"]) == (False, "ready")
    listing = await (await client.get("/api/v1/projects", headers=user.headers)).json()
    assert [p["id"] for p in listing["items"]] == [project_id]
    assert await node.store.wait_for_position(await event_count(node), 10)
    history = await (await client.get(f"{base}/history", headers=user.headers)).json()
    assert [e["type"] for e in history["items"]][-2:] == ["project.archived", "project.unarchived"]
    resp = await client.post(f"{base}/execute", headers=user.headers)
    assert resp.status in (200, 201, 202), await resp.text()


async def test_unarchiving_a_project_that_is_not_archived_is_a_409_and_appends_nothing(
    client: Client, user: Any, node: LogNode
) -> None:
    project = await create(client, user)
    before = await event_count(node)

    resp = await client.post(f"/api/v1/projects/{project['id']}/unarchive", headers=user.headers)

    error = await error_of(resp, 409)
    assert error["details"]["reason"] == "not_archived"
    assert await event_count(node) == before


async def test_an_admin_may_unarchive_another_users_project(
    client: Client, user: Any, admin: Any
) -> None:
    project = await create(client, user)
    await client.delete(f"/api/v1/projects/{project['id']}", headers=user.headers)

    resp = await client.post(f"/api/v1/projects/{project['id']}/unarchive", headers=admin.headers)

    assert resp.status == 200, await resp.text()
    assert (await resp.json())["archived"] is False


async def test_unarchiving_beyond_the_project_limit_is_a_429(
    make_client: Any, make_caller: Any
) -> None:
    client = await make_client(max_projects_per_user=1)
    alice = await make_caller("user")
    first = await create(client, alice)
    await client.delete(f"/api/v1/projects/{first['id']}", headers=alice.headers)
    await create(client, alice, name="second")

    resp = await client.post(f"/api/v1/projects/{first['id']}/unarchive", headers=alice.headers)

    assert (await error_of(resp, 429))["details"]["limit"] == 1


async def test_a_running_project_cannot_be_archived(client: Client, user: Any) -> None:
    project_id = await ready(client, user)
    await client.post(f"/api/v1/projects/{project_id}/execute", headers=user.headers)
    resp = await client.delete(f"/api/v1/projects/{project_id}", headers=user.headers)
    assert (await error_of(resp, 409))["details"]["current_state"] == "running"


async def test_a_project_gets_the_default_template_or_a_named_one(
    client: Client, user: Any
) -> None:
    default = await create(client, user)
    named = await create(client, user, template="ai-development")
    names = ["plan", "implement", "test", "review", "document"]
    assert [p["name"] for p in default["phases"]] == names
    assert named["phases"] == default["phases"]
    # Phases without a command wait for a worker offering the capability named after them.
    assert [p["capabilities"] for p in default["phases"]] == [[n] for n in names]

    resp = await client.post(
        "/api/v1/projects", json={"name": "x", "template": "nope"}, headers=user.headers
    )
    assert (await error_of(resp, 422))["details"]["field"] == "template"
    resp = await client.post(
        "/api/v1/projects",
        json={"name": "x", "template": "ai-development", "phases": PLAN},
        headers=user.headers,
    )
    assert (await error_of(resp, 422))["details"]["field"] == "template"


# --- run control ------------------------------------------------------------------------------


async def test_a_project_without_phases_cannot_be_ready(client: Client, user: Any) -> None:
    project = await create(client, user, phases=[])
    resp = await client.post(f"/api/v1/projects/{project['id']}/ready", headers=user.headers)
    error = await error_of(resp, 409)
    assert error["code"] == "CONFLICT"
    assert (error["details"]["current_state"], error["details"]["reason"]) == ("draft", "no_phases")


async def test_executing_queues_a_job_and_returns_its_stream(
    client: Client, user: Any, node: LogNode
) -> None:
    project_id = await ready(client, user)
    resp = await client.post(
        f"/api/v1/projects/{project_id}/execute",
        json={"start_phase": "build", "model": "sonnet"},
        headers=user.headers,
    )
    assert resp.status == 202
    body = await resp.json()
    assert body["project_id"] == project_id
    assert body["status"] == "queued"
    assert body["stream_url"] == f"/api/v1/stream/{body['job_id']}"
    job_events = await node.store.read_stream(f"job-{body['job_id']}")
    assert [e.type for e in job_events] == ["job.queued", "job.phase_skipped"]
    assert all(str(e.project_id) == project_id for e in job_events)
    job_view = await (
        await client.get(f"/api/v1/jobs/{body['job_id']}", headers=user.headers)
    ).json()
    assert job_view["model"] == "sonnet"


async def test_executing_with_bad_input_or_in_the_wrong_state_is_refused(
    client: Client, user: Any, node: LogNode
) -> None:
    draft = await create(client, user, phases=PLAN)
    resp = await client.post(f"/api/v1/projects/{draft['id']}/execute", headers=user.headers)
    assert (await error_of(resp, 409))["details"]["current_state"] == "draft"
    project_id = await ready(client, user)
    before = await event_count(node)
    resp = await client.post(
        f"/api/v1/projects/{project_id}/execute",
        json={"start_phase": "deploy"},
        headers=user.headers,
    )
    assert (await error_of(resp, 422))["details"]["field"] == "start_phase"
    resp = await client.post(
        f"/api/v1/projects/{project_id}/execute", json={"model": 3}, headers=user.headers
    )
    assert (await error_of(resp, 422))["details"]["field"] == "model"
    assert await event_count(node) == before
    await client.post(f"/api/v1/projects/{project_id}/execute", headers=user.headers)
    resp = await client.post(f"/api/v1/projects/{project_id}/execute", headers=user.headers)
    assert (await error_of(resp, 409))["details"]["current_state"] == "running"


async def test_pause_and_resume_move_a_running_project(client: Client, user: Any) -> None:
    project_id = await ready(client, user)
    resp = await client.post(f"/api/v1/projects/{project_id}/pause", headers=user.headers)
    assert (await error_of(resp, 409))["details"]["current_state"] == "ready"
    await client.post(f"/api/v1/projects/{project_id}/execute", headers=user.headers)

    paused = await client.post(
        f"/api/v1/projects/{project_id}/pause", json={"reason": "lunch"}, headers=user.headers
    )
    assert (await paused.json())["status"] == "paused"
    resp = await client.post(
        f"/api/v1/projects/{project_id}/pause", json={"why": "x"}, headers=user.headers
    )
    assert (await error_of(resp, 422))["details"]["field"] == "why"
    resumed = await client.post(f"/api/v1/projects/{project_id}/resume", headers=user.headers)
    assert (await resumed.json())["status"] == "running"
    resp = await client.post(f"/api/v1/projects/{project_id}/resume", headers=user.headers)
    assert resp.status == 200  # resuming a running project changes nothing


async def test_cancelling_a_queued_run_makes_the_project_ready_again(
    client: Client, user: Any
) -> None:
    project_id = await ready(client, user)
    resp = await client.post(f"/api/v1/projects/{project_id}/cancel", headers=user.headers)
    assert (await error_of(resp, 409))["details"]["current_state"] == "ready"
    run = await (
        await client.post(f"/api/v1/projects/{project_id}/execute", headers=user.headers)
    ).json()

    resp = await client.post(
        f"/api/v1/projects/{project_id}/cancel", json={"reason": "oops"}, headers=user.headers
    )

    assert resp.status == 200
    body = await resp.json()
    assert (body["job_id"], body["status"], body["project_status"]) == (
        run["job_id"], "cancelled", "ready",
    )  # fmt: skip
    status = await (
        await client.get(f"/api/v1/projects/{project_id}/status", headers=user.headers)
    ).json()
    assert status["status"] == "ready"
    assert status["latest_job"]["status"] == "cancelled"


async def test_status_and_history_follow_a_run_to_completion(
    client: Client, user: Any, node: LogNode, settings: Settings
) -> None:
    project_id = await ready(client, user)
    run = await (
        await client.post(f"/api/v1/projects/{project_id}/execute", headers=user.headers)
    ).json()
    services = Services.build(node.store, settings)
    runner = await RegisteredWorker.register(services.workers)
    job_id = uuid.UUID(run["job_id"])
    claimed = await runner.claim_job(job_id)
    now = services.jobs.writer.now()
    await runner.report(
        job_id, job.StartPhase(fencing_token=claimed.fencing_token, phase="plan", at=now)
    )

    status = await (
        await client.get(f"/api/v1/projects/{project_id}/status", headers=user.headers)
    ).json()
    assert (status["status"], status["current_phase"]) == ("running", "plan")
    assert status["latest_job"]["status"] == "running"

    total = await event_count(node)
    assert await node.store.wait_for_position(total, 10)
    resp = await client.get(f"/api/v1/projects/{project_id}/history?limit=3", headers=user.headers)
    first = await resp.json()
    assert [e["type"] for e in first["items"]] == [
        "project.created", "project.phases_planned", "project.status_changed",
    ]  # fmt: skip
    assert first["has_more"] is True
    last = first["items"][-1]["position"]
    assert first["next"] == f"/api/v1/projects/{project_id}/history?limit=3&after={last}"
    rest = await (
        await client.get(
            f"/api/v1/projects/{project_id}/history?after={last}", headers=user.headers
        )
    ).json()
    types = [e["type"] for e in rest["items"]]
    assert types == [
        "project.status_changed", "job.queued", "job.claimed", "job.started", "job.phase_started",
    ]  # fmt: skip
    assert all(e["position"] > last for e in rest["items"])
    resp = await client.get(f"/api/v1/projects/{project_id}/history?after=-1", headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == "after"


async def test_concurrent_commands_on_one_project_all_apply(client: Client, user: Any) -> None:
    project = await create(client, user)
    results = await asyncio.gather(
        *(
            client.post(
                f"/api/v1/projects/{project['id']}/messages",
                json={"content": f"m{n}"},
                headers=user.headers,
            )
            for n in range(8)
        )
    )
    assert [r.status for r in results] == [201] * 8
    body = await (
        await client.get(f"/api/v1/projects/{project['id']}", headers=user.headers)
    ).json()
    assert body["message_count"] == 8
