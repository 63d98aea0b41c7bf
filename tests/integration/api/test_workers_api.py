"""The worker protocol over HTTP: register, heartbeat, claim, reports, leases, cancellation."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient

from helix.appkeys import STORE
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.services.reaper import LeaseReaper
from projections import registry
from projections.rebuild import rebuild
from tests.support import settled

Client = TestClient[Any, Any]
SHELL_PLAN = [{"name": "build", "command": ["make"]}, {"name": "test", "command": ["make", "t"]}]
FAST = {
    "worker_lease_s": 30.0,
    "job_retry_base_s": 0.05,
    "job_retry_cap_s": 0.05,
    "worker_offline_after": 0.5,
}


@pytest.fixture
async def wclient(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client(**FAST)


@pytest.fixture
async def reaper(node: LogNode, settings: Settings) -> AsyncIterator[LeaseReaper]:
    """Not started: tests call `run_once` when they want a round."""
    yield LeaseReaper(node.store, attrs.evolve(settings, **FAST))


async def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json() if status != 204 else None


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    return dict((await resp.json())["error"])


async def register(client: Client, who: Any, capabilities: list[str] | None = None) -> str:
    body = {"hostname": "box", "capabilities": capabilities or ["shell"], "resources": {"cpus": 2}}
    resp = await client.post("/api/v1/workers/register", json=body, headers=who.headers)
    return str((await ok(resp, 201))["worker_id"])


async def execute(client: Client, who: Any, plan: list[dict[str, Any]] | None = None) -> str:
    body = {"name": "p", "phases": SHELL_PLAN if plan is None else plan}
    project = await ok(await client.post("/api/v1/projects", json=body, headers=who.headers), 201)
    await ok(await client.post(f"/api/v1/projects/{project['id']}/ready", headers=who.headers))
    run = await ok(
        await client.post(f"/api/v1/projects/{project['id']}/execute", headers=who.headers), 202
    )
    return str(run["job_id"])


async def claim(client: Client, who: Any, worker_id: str, wait: float = 0, **body: Any) -> Any:
    resp = await client.post(
        f"/api/v1/workers/{worker_id}/claim?wait={wait}", json=body, headers=who.headers
    )
    if resp.status == 204:
        return None
    return await ok(resp)


async def report(client: Client, who: Any, job_id: str, token: int, *reports: Any) -> Any:
    body = {"fencing_token": token, "reports": list(reports)}
    return await client.post(f"/api/v1/jobs/{job_id}/reports", json=body, headers=who.headers)


async def event_types(client: Client, admin: Any, stream_id: str) -> list[str]:
    """The stream's event types in the audit log, once the sequencer has positioned every
    committed event (the log shows positioned events only, so an earlier read could miss some)."""
    await settled(client.server.app[STORE])
    query = f"/api/v1/events?stream_id={stream_id}&limit=1000"
    resp = await client.get(query, headers=admin.headers)
    return [e["type"] for e in (await ok(resp))["items"]]


async def event_count(client: Client, admin: Any, job_id: str) -> int:
    return len(await event_types(client, admin, f"job-{job_id}"))


async def job_of(client: Client, who: Any, job_id: str) -> Any:
    return await ok(await client.get(f"/api/v1/jobs/{job_id}", headers=who.headers))


async def test_a_worker_registers_and_is_listed_to_its_user_admins_and_auditors(
    wclient: Client, worker: Any, admin: Any, auditor: Any, user: Any, make_caller: Any
) -> None:
    body = {
        "name": "w",
        "hostname": "h1",
        "capabilities": ["shell", "gpu"],
        "resources": {"cpus": 8},
    }
    resp = await wclient.post("/api/v1/workers/register", json=body, headers=worker.headers)
    registered = await ok(resp, 201)
    worker_id = registered["worker_id"]
    assert registered["credentials"]["token"]
    assert registered["lease_s"] == FAST["worker_lease_s"]
    other = await make_caller("worker", username="worker2")
    await register(wclient, other)

    mine = await ok(await wclient.get("/api/v1/workers", headers=worker.headers))
    assert [w["id"] for w in mine["items"]] == [worker_id]
    seen = mine["items"][0]
    assert (seen["hostname"], seen["capabilities"], seen["online"]) == (
        "h1",
        ["shell", "gpu"],
        True,
    )
    assert seen["last_heartbeat_at"] is not None
    for who in (admin, auditor):
        listed = await ok(await wclient.get("/api/v1/workers", headers=who.headers))
        assert (len(listed["items"]), listed["has_more"]) == (2, False)
    await error_of(await wclient.get("/api/v1/workers", headers=user.headers), 403)
    # A user cannot register a worker; another worker user cannot claim for this one.
    resp = await wclient.post("/api/v1/workers/register", json=body, headers=user.headers)
    await error_of(resp, 403)
    resp = await wclient.post(f"/api/v1/workers/{worker_id}/claim", headers=other.headers)
    await error_of(resp, 403)
    assert await event_types(wclient, admin, f"worker-{worker_id}") == ["worker.registered"]


async def test_bad_registrations_and_reports_are_refused_and_change_nothing(
    wclient: Client, worker: Any, user: Any, admin: Any
) -> None:
    for body, field in (
        ({"capabilities": []}, "capabilities"),
        ({"capabilities": ["shell"], "extra": 1}, "extra"),
        ({}, "capabilities"),
    ):
        resp = await wclient.post("/api/v1/workers/register", json=body, headers=worker.headers)
        assert field in (await error_of(resp, 422))["details"]["field"]
    worker_id = await register(wclient, worker)
    job_id = await execute(wclient, user)
    claimed = await claim(wclient, worker, worker_id)
    token = claimed["lease"]["fencing_token"]
    before = await event_count(wclient, admin, job_id)
    for bad in (
        {"type": "nope"},
        {"type": "output", "phase": "build", "stream": "stdout"},
        {"type": "file", "phase": "build", "path": "a", "size": -1, "sha256": "0" * 64},
        {"type": "output", "phase": "build", "stream": "stdout", "lines": ["a\x00b"]},
        {"type": "phase_resources", "phase": "build", "cpu_s": 1.0, "max_rss_bytes": 1,
         "read_bytes": -1, "write_bytes": 0},
        {"type": "phase_resources", "phase": "build", "cpu_s": 1.0, "max_rss_bytes": 1,
         "read_bytes": 2**63, "write_bytes": 0},
        {"type": "phase_resources", "phase": "build", "cpu_s": 1.0, "max_rss_bytes": 1,
         "read_bytes": 0},
        {"type": "phase_resources", "phase": "build", "cpu_s": 1.0, "max_rss_bytes": 1.5,
         "read_bytes": 0, "write_bytes": 0},
    ):  # fmt: skip
        good = {"type": "phase_started", "phase": "build"}
        await error_of(await report(wclient, worker, job_id, token, good, bad), 422)
    # Out of order: the whole batch is refused, the first (valid) report included.
    resp = await report(
        wclient, worker, job_id, token,
        {"type": "phase_started", "phase": "build"},
        {"type": "phase_started", "phase": "test"},
    )  # fmt: skip
    await error_of(resp, 409)
    assert await event_count(wclient, admin, job_id) == before
    # `wait` is a number as JSON writes one, within the server's HELIX_CLAIM_MAX_WAIT.
    for wait in ("x", "999", "1_0", "%201", "nan", "inf", "1e999", "-1"):
        url = f"/api/v1/workers/{worker_id}/claim?wait={wait}"
        resp = await wclient.post(url, headers=worker.headers)
        assert (await error_of(resp, 422))["details"]["field"] == "wait", wait


async def test_a_job_runs_through_reports_and_the_read_models_show_it(
    wclient: Client, worker: Any, user: Any, admin: Any
) -> None:
    worker_id = await register(wclient, worker)
    assert await claim(wclient, worker, worker_id) is None  # nothing queued yet
    job_id = await execute(wclient, user)
    claimed = await claim(wclient, worker, worker_id)
    assert claimed["job"]["id"] == job_id
    assert [(p["ordinal"], p["name"], p["status"], p["command"]) for p in claimed["phases"]] == [
        (1, "build", "pending", ["make"]),
        (2, "test", "pending", ["make", "t"]),
    ]
    listed = await job_of(wclient, user, job_id)
    assert [p["ordinal"] for p in listed["phases"]] == [p["ordinal"] for p in claimed["phases"]]
    token = claimed["lease"]["fencing_token"]
    digest = hashlib.sha256(b"x").hexdigest()
    # What each phase's processes used: a sample while it ran, then its figures at its end.
    used = {
        "build": [(0.5, 10_000_000, 100, 200), (1.25, 30_000_000, 4096, 8192)],
        "test": [(0.25, 20_000_000, 1, 2), (2.5, 70_000_000, 5000, 6000)],
    }
    for phase in ("build", "test"):
        samples = [
            {"type": "phase_resources", "phase": phase, "cpu_s": cpu, "max_rss_bytes": rss,
             "read_bytes": read, "write_bytes": written}
            for cpu, rss, read, written in used[phase]
        ]  # fmt: skip
        body = await ok(
            await report(
                wclient, worker, job_id, token,
                {"type": "phase_started", "phase": phase},
                {"type": "output", "phase": phase, "stream": "stdout", "lines": ["a", "b"]},
                samples[0],
                {"type": "output", "phase": phase, "stream": "stderr", "lines": ["c"]},
                {"type": "file", "phase": phase, "path": f"{phase}.txt", "size": 1,
                 "sha256": digest},
                {"type": "cost", "phase": phase, "tokens": 10, "usd": 0.25},
                {"type": "progress", "percent": 50},
                samples[1],
                {"type": "phase_completed", "phase": phase, "exit_code": 0},
            )
        )  # fmt: skip
        assert body["lease"]["fencing_token"] == token
    done = await ok(await report(wclient, worker, job_id, token, {"type": "job_completed"}))
    assert done["job"]["status"] == "completed"

    shown = await job_of(wclient, user, job_id)
    assert (shown["status"], shown["worker_id"], shown["cost"]) == (
        "completed", worker_id, {"tokens": 20, "usd": 0.5},
    )  # fmt: skip
    assert [(p["name"], p["status"], p["output_lines"]) for p in shown["phases"]] == [
        ("build", "completed", 3),
        ("test", "completed", 3),
    ]
    assert [f["path"] for p in shown["phases"] for f in p["files"]] == ["build.txt", "test.txt"]
    # Each phase shows its last figures; the job, CPU and bytes summed and the larger peak.
    assert [p["resources"] for p in shown["phases"]] == [
        {"cpu_s": 1.25, "max_rss_bytes": 30_000_000, "read_bytes": 4096, "write_bytes": 8192},
        {"cpu_s": 2.5, "max_rss_bytes": 70_000_000, "read_bytes": 5000, "write_bytes": 6000},
    ]
    assert shown["resources"] == {
        "cpu_s": 3.75, "max_rss_bytes": 70_000_000, "read_bytes": 9096, "write_bytes": 14192,
    }  # fmt: skip
    types = await event_types(wclient, admin, f"job-{job_id}")
    assert types.count("job.phase_resources") == 4
    output = await ok(await wclient.get(f"/api/v1/jobs/{job_id}/output", headers=user.headers))
    assert [line["line"] for line in output["items"]] == ["a", "b", "c", "a", "b", "c"]
    project = await ok(
        await wclient.get(f"/api/v1/projects/{shown['project_id']}", headers=user.headers)
    )
    assert project["status"] == "completed"
    # Late or repeated reports of a finished job change nothing.
    before = await event_count(wclient, admin, job_id)
    await error_of(await report(wclient, worker, job_id, token, {"type": "job_completed"}), 409)
    assert await event_count(wclient, admin, job_id) == before


async def test_a_long_poll_is_woken_when_a_job_is_queued(
    wclient: Client, worker: Any, user: Any
) -> None:
    worker_id = await register(wclient, worker)
    waiting = asyncio.create_task(claim(wclient, worker, worker_id, wait=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    job_id = await execute(wclient, user)
    async with asyncio.timeout(15):  # far below the 20 s wait: woken, not timed out
        claimed = await waiting
    assert claimed["job"]["id"] == job_id


async def test_capabilities_decide_who_may_claim(
    wclient: Client, worker: Any, user: Any, make_caller: Any
) -> None:
    agent_user = await make_caller("worker", username="agent1")
    agent = await register(wclient, agent_user, ["plan"])
    shell = await register(wclient, worker, ["shell"])
    both = await register(wclient, worker, ["shell", "plan"])
    shell_job = await execute(wclient, user)
    mixed_job = await execute(wclient, user, [{"name": "plan"}, {"name": "b", "command": ["x"]}])

    assert await claim(wclient, agent_user, agent) is None
    assert (await claim(wclient, worker, shell))["job"]["id"] == shell_job
    assert await claim(wclient, worker, shell) is None  # the mixed job needs `plan` too
    assert (await claim(wclient, worker, both))["job"]["id"] == mixed_job


async def test_workers_racing_for_one_job_exactly_one_gets_it(
    wclient: Client, worker: Any, user: Any, admin: Any
) -> None:
    workers = [await register(wclient, worker) for _ in range(6)]
    waiting = [asyncio.create_task(claim(wclient, worker, w, wait=2)) for w in workers]
    await asyncio.sleep(0.2)
    job_id = await execute(wclient, user)
    results = await asyncio.gather(*waiting)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0]["job"]["id"] == job_id
    assert (await event_types(wclient, admin, f"job-{job_id}")).count("job.claimed") == 1


async def test_the_owners_running_limit_keeps_further_jobs_queued(
    make_client: Callable[..., Awaitable[Client]], worker: Any, user: Any
) -> None:
    client = await make_client(max_concurrent_jobs=1, **FAST)
    worker_id = await register(client, worker)
    first = await execute(client, user)
    second = await execute(client, user)
    claimed = await claim(client, worker, worker_id)
    assert claimed["job"]["id"] == first
    assert await claim(client, worker, worker_id) is None
    assert (await job_of(client, user, second))["status"] == "queued"
    waiting = asyncio.create_task(claim(client, worker, worker_id, wait=20))
    await asyncio.sleep(0.2)
    token = claimed["lease"]["fencing_token"]
    await ok(await report(client, worker, first, token, {"type": "job_failed", "error": "boom"}))
    async with asyncio.timeout(15):
        assert (await waiting)["job"]["id"] == second


async def test_an_expired_lease_is_retried_elsewhere_and_the_old_token_is_refused(
    wclient: Client, worker: Any, user: Any, admin: Any, reaper: LeaseReaper
) -> None:
    first = await register(wclient, worker)
    second = await register(wclient, worker)
    job_id = await execute(wclient, user)
    lost = await claim(wclient, worker, first, lease_s=1.0)
    old = lost["lease"]["fencing_token"]
    await ok(
        await report(wclient, worker, job_id, old, {"type": "phase_started", "phase": "build"})
    )
    expired = 0
    async with asyncio.timeout(10):  # the lease runs out (a slow report may have renewed it)
        while not expired:
            await asyncio.sleep(0.1)
            expired, _ = await reaper.run_once()

    types = await event_types(wclient, admin, f"job-{job_id}")
    assert types[-2:] == ["job.stuck", "job.retry_scheduled"]
    await asyncio.sleep(0.1)  # the retry backoff
    retried = await claim(wclient, worker, second)
    assert (retried["job"]["id"], retried["job"]["attempt"]) == (job_id, 2)
    assert retried["lease"]["fencing_token"] == old + 1
    # The phase the lost attempt started runs again.
    assert retried["phases"][0]["status"] == "pending"

    before = await event_count(wclient, admin, job_id)
    late = {"type": "output", "phase": "build", "stream": "stdout", "lines": ["late"]}
    error = await error_of(await report(wclient, worker, job_id, old, late), 409)
    assert error["details"]["reason"] == "stale_fencing_token"
    assert await event_count(wclient, admin, job_id) == before


async def test_a_job_that_keeps_losing_its_lease_is_dead_lettered(
    make_client: Callable[..., Awaitable[Client]],
    worker: Any,
    user: Any,
    admin: Any,
    node: LogNode,
    settings: Settings,
) -> None:
    changes = {**FAST, "job_max_attempts": 2}
    client = await make_client(**changes)
    reaper = LeaseReaper(node.store, attrs.evolve(settings, **changes))
    worker_id = await register(client, worker)
    job_id = await execute(client, user)
    for _ in range(2):
        async with asyncio.timeout(10):
            while await claim(client, worker, worker_id, wait=1, lease_s=0.1) is None:
                pass
        await asyncio.sleep(0.15)
        await reaper.run_once()
    shown = await job_of(client, user, job_id)
    assert (shown["status"], shown["dead_lettered"], shown["attempt"]) == ("failed", True, 2)
    assert "gave up after 2 of 2 attempts" in shown["error"]
    resp = await client.get("/api/v1/events?type=job.failed", headers=user.headers)
    assert resp.status == 200, await resp.text()
    [failure] = [e["data"] for e in (await resp.json())["items"] if e["data"]["job_id"] == job_id]
    # No phase ever ran: it came to nothing, over the time from its first claim to its end.
    assert failure["dead_lettered"] is True and failure["duration_s"] > 0
    assert failure["result"] == {
        "phases_completed": 0, "phases": 2, "files": 0, "cost_tokens": 0, "cost_usd": 0.0,
    }  # fmt: skip
    listed = {}
    for flag in ("true", "false"):
        resp = await client.get(f"/api/v1/jobs?dead_lettered={flag}", headers=user.headers)
        assert resp.status == 200, await resp.text()
        listed[flag] = [j["id"] for j in (await resp.json())["items"]]
    assert (listed["true"], listed["false"]) == ([job_id], [])
    resp = await client.get("/api/v1/jobs?dead_lettered=maybe", headers=user.headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["field"] == "dead_lettered"

    # An admin runs it again: fresh attempts, no longer dead-lettered, every phase pending.
    again = await ok(await client.post(f"/api/v1/jobs/{job_id}/requeue", headers=admin.headers))
    assert (again["status"], again["dead_lettered"], again["max_attempts"]) == ("queued", False, 4)
    assert [p["status"] for p in again["phases"]] == ["pending", "pending"]
    resp = await client.get("/api/v1/jobs?dead_lettered=true", headers=user.headers)
    assert (await ok(resp))["items"] == []
    claimed = await claim(client, worker, worker_id)
    assert (claimed["job"]["id"], claimed["job"]["attempt"]) == (job_id, 3)


async def test_heartbeats_renew_the_lease_and_carry_cancellation(
    make_client: Callable[..., Awaitable[Client]], worker: Any, user: Any
) -> None:
    client = await make_client(**{**FAST, "worker_lease_s": 4.0})
    worker_id = await register(client, worker)
    job_id = await execute(client, user)
    claimed = await claim(client, worker, worker_id, lease_s=1.0)
    token = claimed["lease"]["fencing_token"]
    await ok(
        await report(client, worker, job_id, token, {"type": "phase_started", "phase": "build"})
    )
    await asyncio.sleep(0.4)  # under three quarters of the lease left: the next beat renews
    beat = {
        "worker_id": worker_id,
        "status": "busy",
        "current_job": {"job_id": job_id, "fencing_token": token},
    }
    seen = (
        await ok(await client.post("/api/v1/workers/heartbeat", json=beat, headers=worker.headers))
    )["job"]
    assert (seen["lease_valid"], seen["cancel_requested"]) == (True, False)
    # The 1 s lease was renewed by another second from now.
    assert seen["lease_expires_at"] > claimed["lease"]["expires_at"]

    await ok(await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers))
    await ok(await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers))  # idempotent
    seen = (
        await ok(await client.post("/api/v1/workers/heartbeat", json=beat, headers=worker.headers))
    )["job"]
    assert seen["cancel_requested"] is True
    refused = await report(
        client, worker, job_id, token, {"type": "phase_started", "phase": "test"}
    )
    assert (await error_of(refused, 409))["details"]["reason"] == "cancel_requested"
    body = await ok(await report(client, worker, job_id, token, {"type": "cancel_acknowledged"}))
    assert body["job"]["status"] == "cancelled"
    shown = await job_of(client, user, job_id)
    assert [p["status"] for p in shown["phases"]] == ["failed", "skipped"]
    seen = (
        await ok(await client.post("/api/v1/workers/heartbeat", json=beat, headers=worker.headers))
    )["job"]
    assert (seen["lease_valid"], seen["status"]) == (False, "cancelled")


async def test_a_silent_worker_goes_offline_and_comes_back(
    wclient: Client, worker: Any, admin: Any, reaper: LeaseReaper
) -> None:
    worker_id = await register(wclient, worker)
    await asyncio.sleep(0.6)
    assert await reaper.run_once() == (0, 1)
    shown = await ok(await wclient.get(f"/api/v1/workers/{worker_id}", headers=worker.headers))
    assert (shown["online"], shown["status"]) == (False, "offline")
    await asyncio.sleep(0.4)  # under three quarters of the lease left: the next beat renews
    beat = {"worker_id": worker_id, "status": "idle", "resources": {"load": 0.5}}
    resp = await wclient.post("/api/v1/workers/heartbeat", json=beat, headers=worker.headers)
    assert (await ok(resp))["job"] is None
    shown = await ok(await wclient.get(f"/api/v1/workers/{worker_id}", headers=worker.headers))
    assert (shown["online"], shown["status"], shown["resources"]) == (True, "idle", {"load": 0.5})
    assert await event_types(wclient, admin, f"worker-{worker_id}") == [
        "worker.registered",
        "worker.offline",
        "worker.online",
    ]


async def beat(client: Client, who: Any, worker_id: str, **body: Any) -> None:
    body = {"worker_id": worker_id, "status": "idle", **body}
    await ok(await client.post("/api/v1/workers/heartbeat", json=body, headers=who.headers))


async def rows_of(node: LogNode, table: str) -> list[dict[str, Any]]:
    assert node.pool is not None
    return [dict(r) for r in await node.pool.fetch(f"SELECT * FROM {table} ORDER BY 1")]


async def test_a_rebuilt_worker_registry_equals_the_live_one_and_leaves_liveness_alone(
    wclient: Client, worker: Any, admin: Any, node: LogNode, reaper: LeaseReaper
) -> None:
    ids = [await register(wclient, worker, ["shell", f"cap{i}"]) for i in range(4)]
    await asyncio.sleep(0.6)
    for worker_id in ids[:2]:
        await beat(wclient, worker, worker_id, resources={"load": 0.25})
    assert await reaper.run_once() == (0, 2)  # the two silent ones
    await beat(wclient, worker, ids[2], status="draining")  # comes back
    await settled(node.store)
    listed = await ok(await wclient.get("/api/v1/workers", headers=admin.headers))
    assert [(w["online"], w["status"]) for w in listed["items"]] == [
        (True, "idle"),
        (True, "idle"),
        (True, "draining"),
        (False, "offline"),
    ]
    registry_rows = await rows_of(node, "workers")
    pruned = await rows_of(node, "workers_pruned")
    liveness = await rows_of(node, "worker_heartbeats")
    versions = {str(r["worker_id"]): r["version"] for r in registry_rows}
    assert [versions[worker_id] for worker_id in ids] == [1, 1, 3, 2]

    report = await rebuild(node.store, registry.get("workers"), batch_size=2)

    assert report.events == 4 + 2 + 1
    assert await rows_of(node, "workers") == registry_rows
    assert await rows_of(node, "workers_pruned") == pruned
    assert await rows_of(node, "worker_heartbeats") == liveness
    assert await ok(await wclient.get("/api/v1/workers", headers=admin.headers)) == listed


async def test_worker_events_carry_who_which_request_and_from_where(
    wclient: Client, worker: Any, node: LogNode, reaper: LeaseReaper
) -> None:
    body = {"hostname": "box", "capabilities": ["shell"]}
    resp = await wclient.post("/api/v1/workers/register", json=body, headers=worker.headers)
    worker_id = (await ok(resp, 201))["worker_id"]
    registered_by = resp.headers["X-Request-ID"]
    await asyncio.sleep(0.6)
    assert await reaper.run_once() == (0, 1)
    resp = await wclient.post(
        "/api/v1/workers/heartbeat", json={"worker_id": worker_id}, headers=worker.headers
    )
    await ok(resp)
    back_by = resp.headers["X-Request-ID"]
    assert node.pool is not None
    rows = await node.pool.fetch(
        "SELECT type, metadata FROM events WHERE stream_id = $1 ORDER BY version",
        f"worker-{worker_id}",
    )
    assert [r["type"] for r in rows] == ["worker.registered", "worker.offline", "worker.online"]
    keys = {"actor", "request_id", "correlation_id", "causation_id", "source"}
    assert all(set(r["metadata"]) == keys for r in rows)
    registered, offline, online = (r["metadata"] for r in rows)
    assert (registered["request_id"], online["request_id"]) == (registered_by, back_by)
    assert registered["actor"] == online["actor"] != offline["actor"] == "system:reaper"
    for metadata in (registered, online):
        assert metadata["correlation_id"] == metadata["request_id"]
        assert metadata["source"]


async def test_a_queued_job_is_cancelled_at_once_and_never_claimed(
    wclient: Client, worker: Any, user: Any
) -> None:
    worker_id = await register(wclient, worker)
    job_id = await execute(wclient, user)
    cancelled = await ok(await wclient.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers))
    assert cancelled["status"] == "cancelled"
    assert await claim(wclient, worker, worker_id) is None


async def test_a_worker_offline_for_long_enough_is_pruned_and_a_rebuild_agrees(
    wclient: Client, worker: Any, admin: Any, node: LogNode, settings: Settings
) -> None:
    never = LeaseReaper(node.store, attrs.evolve(settings, **FAST, worker_prune_after=0))
    soon = LeaseReaper(node.store, attrs.evolve(settings, **FAST, worker_prune_after=0.3))
    gone, kept = await register(wclient, worker), await register(wclient, worker)
    await beat(wclient, worker, gone, resources={"load": 0.5})
    await asyncio.sleep(0.6)
    await beat(wclient, worker, kept)
    assert await never.run_once() == (0, 1)  # `gone` goes offline; 0 never prunes
    await asyncio.sleep(0.4)
    await beat(wclient, worker, kept)  # before every round: `kept` is never silent for long
    assert await never.run_once() == (0, 0)
    listed = await ok(await wclient.get("/api/v1/workers", headers=admin.headers))
    assert {w["id"] for w in listed["items"]} == {gone, kept}

    await beat(wclient, worker, kept)
    await soon.run_once()  # offline for over 0.3 s: pruned; `kept` is online and stays

    listed = await ok(await wclient.get("/api/v1/workers", headers=admin.headers))
    assert [w["id"] for w in listed["items"]] == [kept]
    assert (await wclient.get(f"/api/v1/workers/{gone}", headers=admin.headers)).status == 404
    assert await event_types(wclient, admin, f"worker-{gone}") == [
        "worker.registered",
        "worker.offline",
        "worker.pruned",
    ]
    assert [str(r["worker_id"]) for r in await rows_of(node, "worker_heartbeats")] == [kept]
    await beat(wclient, worker, kept)
    assert await soon.run_once() == (0, 0)
    assert node.pool is not None
    types = "SELECT type FROM events WHERE stream_id = $1 ORDER BY version"
    assert [r["type"] for r in await node.pool.fetch(types, f"worker-{gone}")][-1:] == [
        "worker.pruned"
    ]  # pruned once: a later round records nothing more for it
    assert len(await node.pool.fetch(types, f"worker-{gone}")) == 3
    registry_rows = await rows_of(node, "workers")

    await rebuild(node.store, registry.get("workers"), batch_size=2)

    assert await rows_of(node, "workers") == registry_rows
    assert [str(r["worker_id"]) for r in registry_rows] == [kept]


async def test_only_the_leaseholders_own_worker_may_hand_a_job_back_and_a_refusal_changes_nothing(
    wclient: Client,
    worker: Any,
    make_caller: Callable[..., Awaitable[Any]],
    user: Any,
    admin: Any,
) -> None:
    mine = await register(wclient, worker)
    job_id = await execute(wclient, user)
    claimed = await claim(wclient, worker, mine)
    assert claimed["job"]["id"] == job_id
    token = claimed["lease"]["fencing_token"]
    stranger = await make_caller("worker", username="stranger")
    path = f"/api/v1/jobs/{job_id}/release"
    before = await event_count(wclient, admin, job_id)

    other = await wclient.post(path, json={"fencing_token": token}, headers=stranger.headers)
    stale = await wclient.post(path, json={"fencing_token": token + 1}, headers=worker.headers)
    by_owner = await wclient.post(path, json={"fencing_token": token}, headers=user.headers)
    bad = await wclient.post(path, json={"fencing_token": "x"}, headers=worker.headers)

    assert other.status in (403, 404) and stale.status == 409
    assert by_owner.status == 403 and bad.status in (400, 422)
    assert await event_count(wclient, admin, job_id) == before
    assert (await job_of(wclient, user, job_id))["status"] == "running"
    released = await ok(
        await wclient.post(path, json={"fencing_token": token}, headers=worker.headers)
    )
    assert released["job"]["status"] == "queued"


async def test_a_jobs_context_is_for_its_leaseholders_worker_alone(
    wclient: Client,
    worker: Any,
    make_caller: Callable[..., Awaitable[Any]],
    user: Any,
) -> None:
    plan = [{"name": "build", "command": ["make"], "prompt": "Build it"}]
    body = {"name": "ctx", "description": "what it is", "phases": plan}
    project = await ok(await wclient.post("/api/v1/projects", json=body, headers=user.headers), 201)
    assert project["phases"][0]["prompt"] == "Build it"
    for prompt in ("", ["x"], "x" * 20_001):
        wrong = {"name": "bad", "phases": [{"name": "a", "prompt": prompt}]}
        refused = await wclient.post("/api/v1/projects", json=wrong, headers=user.headers)
        assert refused.status in (400, 422) and "error" in await refused.json()
    base = f"/api/v1/projects/{project['id']}"
    said = {"content": "make it fast"}
    await ok(await wclient.post(f"{base}/messages", json=said, headers=user.headers), 201)
    await ok(await wclient.post(f"{base}/ready", headers=user.headers))
    run = await ok(
        await wclient.post(f"{base}/execute", json={"model": "m1"}, headers=user.headers), 202
    )
    mine = await register(wclient, worker)
    claimed = await claim(wclient, worker, mine)
    assert claimed["phases"][0]["prompt"] == "Build it"
    token = claimed["lease"]["fencing_token"]
    path = f"/api/v1/jobs/{run['job_id']}/context"
    stranger = await make_caller("worker", username="stranger")

    context = await ok(await wclient.get(f"{path}?fencing_token={token}", headers=worker.headers))
    assert context["project"] == {
        "id": project["id"],
        "name": "ctx",
        "description": "what it is",
        "project_type": project["project_type"],
    }
    assert [(m["role"], m["content"]) for m in context["discussion"]] == [("user", "make it fast")]
    assert context["job"]["model"] == "m1"
    assert [(p["name"], p["status"], p["prompt"]) for p in context["phases"]] == [
        ("build", "pending", "Build it")
    ]
    stale = await wclient.get(f"{path}?fencing_token={token + 1}", headers=worker.headers)
    other = await wclient.get(f"{path}?fencing_token={token}", headers=stranger.headers)
    by_owner = await wclient.get(f"{path}?fencing_token={token}", headers=user.headers)
    assert (await error_of(stale, 409))["details"]["reason"] == "stale_fencing_token"
    assert other.status in (403, 404) and by_owner.status == 403
    for bad in ("", "?fencing_token=x", "?fencing_token=-1", "?fencing_token=" + "9" * 40):
        assert (await wclient.get(path + bad, headers=worker.headers)).status in (400, 422)

    failed = {"type": "job_failed", "error": "gave up"}
    await ok(await report(wclient, worker, run["job_id"], token, failed))
    ended = await wclient.get(f"{path}?fencing_token={token}", headers=worker.headers)
    assert (await error_of(ended, 409))["details"]["reason"] == "terminal"


async def test_a_phases_message_report_joins_the_discussion_as_the_agent(
    wclient: Client, worker: Any, user: Any, admin: Any
) -> None:
    job_id = await execute(wclient, user)
    mine = await register(wclient, worker)
    claimed = await claim(wclient, worker, mine)
    token = claimed["lease"]["fencing_token"]
    project_id = claimed["job"]["project_id"]
    started = {"type": "phase_started", "phase": "build"}
    message = {"type": "message", "phase": "build", "content": "Built in 3 s"}
    sha = hashlib.sha256(b"x").hexdigest()
    made = {"type": "file", "phase": "build", "path": "a.out", "size": 1, "sha256": sha}
    await ok(
        await report(
            wclient, worker, job_id, token, started, message, {**made, "change": "modified"}
        )
    )
    before = await event_count(wclient, admin, job_id)
    for bad in (
        {**message, "content": ""},
        {**message, "content": "x" * 4001},
        {**message, "phase": "test"},
        {**made, "change": "deleted"},
    ):
        refused = await report(wclient, worker, job_id, token, bad)
        assert refused.status in (400, 409, 422), bad
        assert "error" in await refused.json()
    assert await event_count(wclient, admin, job_id) == before

    thread = await ok(
        await wclient.get(f"/api/v1/projects/{project_id}/messages", headers=user.headers)
    )
    assert [(m["role"], m["author"], m["content"]) for m in thread["items"]] == [
        ("agent", "build", "Built in 3 s")
    ]
    shown = await job_of(wclient, user, job_id)
    assert shown["phases"][0]["files"] == [
        {"path": "a.out", "size": 1, "sha256": sha, "change": "modified"}
    ]


async def test_a_failed_job_is_requeued_by_its_owner_and_runs_its_undone_phases_again(
    wclient: Client, worker: Any, user: Any, other_user: Any, auditor: Any, admin: Any
) -> None:
    worker_id = await register(wclient, worker)
    job_id = await execute(wclient, user)
    project_id = (await job_of(wclient, user, job_id))["project_id"]
    requeue = f"/api/v1/jobs/{job_id}/requeue"
    # Not failed (queued): refused, and nothing is written.
    before = await event_count(wclient, admin, job_id)
    error = await error_of(await wclient.post(requeue, headers=user.headers), 409)
    assert error["details"]["reason"] == "not_failed"
    assert await event_count(wclient, admin, job_id) == before

    first = await claim(wclient, worker, worker_id)
    token = first["lease"]["fencing_token"]
    started = {"type": "phase_started", "phase": "build"}
    done = {"type": "phase_completed", "phase": "build", "exit_code": 0}
    await ok(await report(wclient, worker, job_id, token, started, done))
    await ok(
        await report(wclient, worker, job_id, token, {"type": "phase_started", "phase": "test"})
    )
    failed = {"type": "phase_failed", "phase": "test", "exit_code": 2, "error": "tests failed"}
    await ok(
        await report(wclient, worker, job_id, token, failed, {"type": "job_failed", "error": "x"})
    )
    project = await ok(await wclient.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["status"] == "failed"

    # Another user does not see it; an auditor may not write; unknown body fields are refused.
    await error_of(await wclient.post(requeue, headers=other_user.headers), 404)
    await error_of(await wclient.post(requeue, headers=auditor.headers), 403)
    await error_of(await wclient.post(requeue, json={"attempts": 9}, headers=user.headers), 422)
    assert (await job_of(wclient, user, job_id))["status"] == "failed"

    again = await ok(await wclient.post(requeue, headers=user.headers))
    assert (again["status"], again["error"], again["dead_lettered"]) == ("queued", None, False)
    assert [p["status"] for p in again["phases"]] == ["completed", "pending"]
    project = await ok(await wclient.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["status"] == "running"
    second = await claim(wclient, worker, worker_id)
    assert second["job"]["id"] == job_id and second["lease"]["fencing_token"] > token
    assert [p["name"] for p in second["phases"] if p["status"] == "pending"] == ["test"]
    token = second["lease"]["fencing_token"]
    test_done = {"type": "phase_completed", "phase": "test", "exit_code": 0}
    await ok(
        await report(wclient, worker, job_id, token, {"type": "phase_started", "phase": "test"})
    )
    await ok(await report(wclient, worker, job_id, token, test_done, {"type": "job_completed"}))
    assert (await job_of(wclient, user, job_id))["status"] == "completed"
    project = await ok(await wclient.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["status"] == "completed"
    types = await event_types(wclient, admin, f"job-{job_id}")
    assert types.count("job.requeued") == 1 and types[-1] == "job.completed"
    # Completed now: not failed, so refused.
    error = await error_of(await wclient.post(requeue, headers=admin.headers), 409)
    assert error["details"]["reason"] == "not_failed"
