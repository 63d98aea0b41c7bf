"""The job routes over HTTP: list, show, output, cancel."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.domain import job
from helix.domain.job import OutputStream
from helix.services import Services
from tests.support import RegisteredWorker

Client = TestClient[Any, Any]
PLAN = [{"name": "plan"}, {"name": "build", "command": ["make"]}]


async def queued_job(client: Client, who: Any) -> tuple[str, str]:
    """(project id, job id) of a freshly executed project."""
    resp = await client.post(
        "/api/v1/projects", json={"name": "p", "phases": PLAN}, headers=who.headers
    )
    project_id = (await resp.json())["id"]
    await client.post(f"/api/v1/projects/{project_id}/ready", headers=who.headers)
    resp = await client.post(f"/api/v1/projects/{project_id}/execute", headers=who.headers)
    return project_id, (await resp.json())["job_id"]


async def run_with_output(
    services: Services, job_id: str, *, finish: bool = True
) -> tuple[RegisteredWorker, int]:
    """A worker claims the job and writes 3 lines in `plan` and 2 in `build`; returns the worker
    and its fencing token."""
    jid = uuid.UUID(job_id)
    worker = await RegisteredWorker.register(services.workers)
    token = (await worker.claim_job(jid)).fencing_token
    now = services.jobs.writer.now()
    steps: list[job.WorkerReport] = [
        job.StartPhase(fencing_token=token, phase="plan", at=now),
        job.RecordOutput(fencing_token=token, phase="plan", stream=OutputStream.STDOUT,
                         lines=("p1", "p2", "p3"), at=now),
        job.RecordCost(fencing_token=token, phase="plan", tokens=100, usd=0.5, at=now),
        job.CompletePhase(fencing_token=token, phase="plan", at=now),
        job.StartPhase(fencing_token=token, phase="build", at=now),
        job.RecordOutput(fencing_token=token, phase="build", stream=OutputStream.STDERR,
                         lines=("b1", "b2"), at=now),
    ]  # fmt: skip
    if finish:
        steps += [
            job.CompletePhase(fencing_token=token, phase="build", at=now),
            job.CompleteJob(fencing_token=token, at=now),
        ]
    await worker.report_each(jid, steps)
    return worker, token


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    return dict((await resp.json())["error"])


async def test_jobs_are_listed_by_project_and_status_with_a_total(
    client: Client, user: Any, other_user: Any, admin: Any
) -> None:
    first_project, first = await queued_job(client, user)
    _, second = await queued_job(client, user)
    await client.post(f"/api/v1/jobs/{second}/cancel", headers=user.headers)
    await queued_job(client, other_user)

    mine = await (await client.get("/api/v1/jobs", headers=user.headers)).json()
    assert len(mine["items"]) == 2
    by_project = await (
        await client.get(f"/api/v1/jobs?project_id={first_project}", headers=user.headers)
    ).json()
    assert [j["id"] for j in by_project["items"]] == [first]
    cancelled = await (
        await client.get("/api/v1/jobs?status=cancelled", headers=user.headers)
    ).json()
    assert [j["id"] for j in cancelled["items"]] == [second]
    paged = await (await client.get("/api/v1/jobs?limit=1&offset=1", headers=user.headers)).json()
    assert (len(paged["items"]), paged["has_more"], paged["next"]) == (1, False, None)
    assert paged["items"][0]["id"] == mine["items"][1]["id"]
    assert (
        len((await (await client.get("/api/v1/jobs", headers=admin.headers)).json())["items"]) == 3
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=asleep", "status"), ("project_id=nope", "project_id"), ("limit=1000", "limit")],
)
async def test_listing_jobs_with_a_bad_filter_is_a_422(
    client: Client, user: Any, query: str, field: str
) -> None:
    resp = await client.get(f"/api/v1/jobs?{query}", headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == field


async def test_a_job_shows_its_phases_timings_cost_and_output_tail(
    client: Client, user: Any, services: Services
) -> None:
    _, job_id = await queued_job(client, user)
    await run_with_output(services, job_id)

    resp = await client.get(f"/api/v1/jobs/{job_id}", headers=user.headers)

    assert resp.status == 200
    body = await resp.json()
    assert (body["status"], body["progress"], body["attempt"]) == ("completed", 100, 1)
    assert body["cost"] == {"tokens": 100, "usd": 0.5}
    assert [(p["name"], p["status"], p["output_lines"]) for p in body["phases"]] == [
        ("plan", "completed", 3), ("build", "completed", 2),
    ]  # fmt: skip
    plan = body["phases"][0]
    assert plan["cost"] == {"tokens": 100, "usd": 0.5}
    assert plan["started_at"].endswith("Z") and plan["duration_s"] >= 0
    assert [line["line"] for line in body["output_tail"]] == ["p1", "p2", "p3", "b1", "b2"]
    assert body["output_tail"][-1]["stream"] == "stderr"
    assert body["stream_url"] == f"/api/v1/stream/{job_id}"


async def test_output_pages_after_a_line_number_and_filters_by_phase(
    client: Client, user: Any, services: Services
) -> None:
    _, job_id = await queued_job(client, user)
    await run_with_output(services, job_id)

    first = await (
        await client.get(f"/api/v1/jobs/{job_id}/output?limit=2", headers=user.headers)
    ).json()
    assert [(line["n"], line["line"]) for line in first["items"]] == [(1, "p1"), (2, "p2")]
    assert (first["next"], first["has_more"]) == (
        f"/api/v1/jobs/{job_id}/output?limit=2&after=2",
        True,
    )
    rest = await (
        await client.get(f"/api/v1/jobs/{job_id}/output?after=2", headers=user.headers)
    ).json()
    assert [line["line"] for line in rest["items"]] == ["p3", "b1", "b2"]
    build = await (
        await client.get(f"/api/v1/jobs/{job_id}/output?phase=build", headers=user.headers)
    ).json()
    assert [(line["line_no"], line["line"]) for line in build["items"]] == [(1, "b1"), (2, "b2")]
    resp = await client.get(f"/api/v1/jobs/{job_id}/output?after=x", headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == "after"


async def test_another_users_job_is_not_found(
    client: Client, user: Any, other_user: Any, node: LogNode
) -> None:
    _, job_id = await queued_job(client, user)
    for method, path in [
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}/output"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
    ]:
        resp = await client.request(method, path, headers=other_user.headers)
        assert (await error_of(resp, 404))["code"] == "NOT_FOUND"
    events = await node.store.read_stream(f"job-{job_id}")
    assert [e.type for e in events] == ["job.queued"]


async def test_cancelling_a_queued_job_is_immediate_and_idempotent(
    client: Client, user: Any
) -> None:
    project_id, job_id = await queued_job(client, user)

    first = await client.post(
        f"/api/v1/jobs/{job_id}/cancel", json={"reason": "no"}, headers=user.headers
    )
    again = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers)

    assert (first.status, again.status) == (200, 200)
    assert (await first.json())["status"] == "cancelled"
    assert (await again.json())["status"] == "cancelled"
    project = await (
        await client.get(f"/api/v1/projects/{project_id}", headers=user.headers)
    ).json()
    assert project["status"] == "ready"


async def test_cancelling_a_running_job_waits_for_its_worker(
    client: Client, user: Any, services: Services
) -> None:
    project_id, job_id = await queued_job(client, user)
    runner, token = await run_with_output(services, job_id, finish=False)

    resp = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers)

    body = await resp.json()
    assert (body["status"], body["cancel_requested"]) == ("running", True)
    ack = job.AcknowledgeCancel(fencing_token=token, at=services.jobs.writer.now())
    await runner.report(uuid.UUID(job_id), ack)
    body = await (await client.get(f"/api/v1/jobs/{job_id}", headers=user.headers)).json()
    assert body["status"] == "cancelled"
    assert [p["status"] for p in body["phases"]] == ["completed", "failed"]
    project = await (
        await client.get(f"/api/v1/projects/{project_id}", headers=user.headers)
    ).json()
    assert project["status"] == "ready"


async def test_cancelling_a_finished_job_changes_nothing(
    client: Client, user: Any, services: Services, node: LogNode
) -> None:
    _, job_id = await queued_job(client, user)
    await run_with_output(services, job_id)
    before = await node.store.read_stream(f"job-{job_id}")
    resp = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers)
    assert (await resp.json())["status"] == "completed"
    assert len(await node.store.read_stream(f"job-{job_id}")) == len(before)
    resp = await client.post(
        f"/api/v1/jobs/{job_id}/cancel", json={"because": 1}, headers=user.headers
    )
    assert (await error_of(resp, 422))["details"]["field"] == "because"


async def test_job_routes_need_credentials_and_auditors_cannot_cancel(
    client: Client, user: Any, auditor: Any
) -> None:
    _, job_id = await queued_job(client, user)
    assert (await client.get("/api/v1/jobs")).status == 401
    assert (await client.get(f"/api/v1/jobs/{job_id}", headers=auditor.headers)).status == 200
    resp = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auditor.headers)
    assert (await error_of(resp, 403))["code"] == "FORBIDDEN"
