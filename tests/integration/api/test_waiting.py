"""Never silently stuck: a queued job no online worker can claim says why in its view, once in
its stream, and a run no registered worker could ever claim is warned of at execute; with an
agent command the default template runs end to end on the in-process worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient

from helix.appkeys import STORE
from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.cli.local_worker import LocalWorker
from helix.config import Settings
from helix.services.reaper import LeaseReaper
from tests.support import settled

Client = TestClient[Any, Any]
AI = ["plan", "implement", "test", "review", "document"]
FAST = {"job_retry_base_s": 0.05, "job_retry_cap_s": 0.05, "worker_offline_after": 0.3}
FAKE_AGENT = """\
set -e
test -s "$HELIX_CONTEXT_FILE"
echo "agent ran $HELIX_PHASE with ${HELIX_MODEL:-no model}: $HELIX_PROMPT"
echo "$HELIX_PHASE" >> phases.txt
echo "::helix progress 10"
"""


@pytest.fixture
async def fast(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client(**FAST)


@pytest.fixture
def reapers(node: LogNode, settings: Settings) -> tuple[LeaseReaper, LeaseReaper]:
    """Two nodes' reapers, not started: tests run their rounds."""
    fast = attrs.evolve(settings, **FAST)
    return LeaseReaper(node.store, fast), LeaseReaper(node.store, fast)


async def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def register(client: Client, who: Any, capabilities: list[str]) -> str:
    body = {"hostname": "box", "capabilities": capabilities, "resources": {}}
    resp = await client.post("/api/v1/workers/register", json=body, headers=who.headers)
    return str((await ok(resp, 201))["worker_id"])


async def run_default_project(client: Client, who: Any, **execute: Any) -> tuple[str, Any]:
    """A project created with the defaults (the `ai-development` template), executed."""
    made = await ok(
        await client.post("/api/v1/projects", json={"name": "defaults"}, headers=who.headers), 201
    )
    await ok(await client.post(f"/api/v1/projects/{made['id']}/ready", headers=who.headers))
    run = await ok(
        await client.post(
            f"/api/v1/projects/{made['id']}/execute", json=execute, headers=who.headers
        ),
        202,
    )
    return str(made["id"]), run


async def job_of(client: Client, who: Any, job_id: str) -> Any:
    return await ok(await client.get(f"/api/v1/jobs/{job_id}", headers=who.headers))


async def waiting_events(client: Client, admin: Any, job_id: str) -> list[Any]:
    await settled(client.server.app[STORE])
    query = f"/api/v1/events?stream_id=job-{job_id}&limit=1000"
    events = (await ok(await client.get(query, headers=admin.headers)))["items"]
    return [e for e in events if e["type"] in ("job.waiting", "job.claimed")]


async def test_a_default_project_without_an_agent_warns_at_execute_and_waits_saying_so_once(
    fast: Client, user: Any, worker: Any, admin: Any, reapers: tuple[LeaseReaper, LeaseReaper]
) -> None:
    # A worker that runs commands only, as the in-process one does without an agent command.
    await register(fast, worker, ["shell"])

    project_id, run = await run_default_project(fast, user)

    [warning] = run["warnings"]
    assert warning["code"] == "no_capable_worker" and warning["capabilities"] == AI
    assert "no registered worker offers plan, implement" in warning["message"]
    assert "HELIX_AGENT_COMMAND" in warning["message"]
    job_id = run["job_id"]
    shown = await job_of(fast, user, job_id)
    assert shown["status"] == "queued"
    assert shown["waiting"]["capabilities"] == AI
    assert shown["waiting"]["reason"].startswith(
        "no online worker offers plan, implement, test, review, document"
    )
    project = await ok(await fast.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["latest_job"]["waiting"] == shown["waiting"]
    status = await ok(await fast.get(f"/api/v1/projects/{project_id}/status", headers=user.headers))
    assert status["latest_job"]["waiting"] == shown["waiting"]
    listed = await ok(await fast.get("/api/v1/jobs", headers=user.headers))
    assert [j["waiting"] for j in listed["items"]] == [shown["waiting"]]

    # Two nodes' reapers at once, then more rounds: the stream says it once.
    await asyncio.gather(*(reaper.run_once() for reaper in reapers))
    for _ in range(3):
        await reapers[0].run_once()
    [said] = await waiting_events(fast, admin, job_id)
    assert said["type"] == "job.waiting"
    assert said["data"]["capabilities"] == AI
    assert said["data"]["reason"] == shown["waiting"]["reason"]

    # A worker offering the phases' capabilities comes online: the job can be claimed now.
    capable = await register(fast, worker, AI)
    assert (await job_of(fast, user, job_id))["waiting"] is None
    claimed = await ok(
        await fast.post(f"/api/v1/workers/{capable}/claim", json={}, headers=worker.headers)
    )
    assert claimed["job"]["id"] == job_id
    token = claimed["lease"]["fencing_token"]
    started = {"fencing_token": token, "reports": [{"type": "phase_started", "phase": "plan"}]}
    await ok(
        await fast.post(f"/api/v1/jobs/{job_id}/reports", json=started, headers=worker.headers)
    )
    shown = await job_of(fast, user, job_id)
    assert (shown["status"], shown["waiting"]) == ("running", None)


async def test_a_job_waits_again_when_its_capable_worker_goes_away_in_a_new_episode(
    fast: Client, user: Any, worker: Any, admin: Any, reapers: tuple[LeaseReaper, LeaseReaper]
) -> None:
    reaper = reapers[0]
    capable = await register(fast, worker, AI)
    _, run = await run_default_project(fast, user)
    job_id = run["job_id"]
    assert run["warnings"] == []
    assert (await job_of(fast, user, job_id))["waiting"] is None
    await reaper.run_once()
    assert await waiting_events(fast, admin, job_id) == []

    # The worker falls silent and is marked offline: the job waits, and says so once.
    await asyncio.sleep(0.4)
    await reaper.run_once()
    shown = await job_of(fast, user, job_id)
    assert shown["waiting"]["capabilities"] == AI
    assert shown["waiting"]["reason"].startswith("no worker is online")
    await reaper.run_once()
    await reaper.run_once()
    assert [e["type"] for e in await waiting_events(fast, admin, job_id)] == ["job.waiting"]

    # It comes back and claims the job, then is lost with its lease: a new episode, said again.
    claim = {"lease_s": 0.5}
    claimed = await ok(
        await fast.post(f"/api/v1/workers/{capable}/claim", json=claim, headers=worker.headers)
    )
    assert claimed["job"]["id"] == job_id
    await asyncio.sleep(0.6)
    await reaper.run_once()  # the lease expires; the silent worker is marked offline
    assert (await job_of(fast, user, job_id))["status"] == "queued"
    await reaper.run_once()
    await reaper.run_once()
    types = [e["type"] for e in await waiting_events(fast, admin, job_id)]
    assert types == ["job.waiting", "job.claimed", "job.waiting"]


async def test_a_plan_that_some_registered_worker_offers_gets_no_warning(
    fast: Client, user: Any, worker: Any
) -> None:
    await register(fast, worker, ["shell"])
    body = {"name": "shell", "phases": [{"name": "build", "command": ["make"]}]}
    made = await ok(await fast.post("/api/v1/projects", json=body, headers=user.headers), 201)
    await ok(await fast.post(f"/api/v1/projects/{made['id']}/ready", headers=user.headers))
    run = await ok(
        await fast.post(f"/api/v1/projects/{made['id']}/execute", headers=user.headers), 202
    )
    assert run["warnings"] == []
    # No single worker offering both is a wait too, though each is offered somewhere.
    await register(fast, worker, ["gpu"])
    phases = [{"name": "train", "command": ["train"], "capabilities": ["shell", "gpu"]}]
    body = {"prompt": "train it", "phases": phases}
    quick = await ok(await fast.post("/api/v1/quick-action", json=body, headers=user.headers), 202)
    [warning] = quick["warnings"]
    assert warning["capabilities"] == ["shell", "gpu"]
    assert "no single registered worker offers shell, gpu together" in warning["message"]
    assert "HELIX_AGENT_COMMAND" not in warning["message"]  # it has a command: no agent hint
    shown = await job_of(fast, user, quick["job_id"])
    assert shown["waiting"]["capabilities"] == ["shell", "gpu"]


async def test_with_an_agent_command_the_default_project_runs_every_phase_in_process(
    client: Client,
    user: Any,
    admin: Any,
    accounts: Accounts,
    settings: Settings,
    tmp_path: Path,
) -> None:
    agent = tmp_path / "fake-agent.sh"
    agent.write_text(FAKE_AGENT)
    local_settings = attrs.evolve(
        settings,
        data_dir=tmp_path / "data",
        port=8102,
        # As root, phases as root: no phase user taken from other tests.
        phase_user="root",
        agent_command=("sh", str(agent)),
    )
    local = LocalWorker(accounts, local_settings, str(client.make_url("/")).rstrip("/"))
    await local.start()
    try:
        await _until_a_worker_is_online(client, admin)  # it registers as it starts
        project_id, run = await run_default_project(client, user, model="fake-model")
        assert run["warnings"] == []
        job_id = run["job_id"]
        done = await ok(
            await client.get(f"/api/v1/jobs/{job_id}", params={"wait": "60"}, headers=user.headers)
        )
    finally:
        await local.stop()
    assert done["status"] == "completed", done
    assert [(p["name"], p["status"]) for p in done["phases"]] == [(n, "completed") for n in AI]
    output = await ok(await client.get(f"/api/v1/jobs/{job_id}/output", headers=user.headers))
    ran = [line["line"] for line in output["items"] if line["line"].startswith("agent ran")]
    assert [line.split(" with ")[0] for line in ran] == [f"agent ran {n}" for n in AI]
    assert all(" with fake-model: " in line for line in ran)
    assert "agent ran plan with fake-model: Read the project" in ran[0]
    workspace = local_settings.data_dir / "workspaces" / project_id
    assert (workspace / "phases.txt").read_text().split() == AI
    # Another run from the discussion: its worker is offline now, but registered, so no warning.
    again = {"content": "once more", "run": True}
    posted = await ok(
        await client.post(
            f"/api/v1/projects/{project_id}/messages", json=again, headers=user.headers
        ),
        201,
    )
    assert posted["warnings"] == []


async def _until_a_worker_is_online(client: Client, admin: Any) -> None:
    async with asyncio.timeout(20):
        while True:
            query = "/api/v1/workers?online=true"
            if (await ok(await client.get(query, headers=admin.headers)))["items"]:
                return
            await asyncio.sleep(0.05)
