"""The deployment of docker/compose.yaml without Docker: the processes its services run, on one
database. Two API nodes, the background nodes with the compose file's own role lists, and two
`helix worker` processes run jobs; the sequencer's leader and a worker are killed mid-run, and
yet every job completes (the dead worker's retried), the log stays dense and every webhook
delivery arrives."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import pwd
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import attrs
import pytest
import yaml

from helix.cli.serve import ROLES
from helix.worker.sweep import stop_and_kill
from tests.e2e.processes import HELIX, Server, free_port, helix_env, run_helix, wait_ready
from tests.integration.webhooks.webhook_support import Receiver
from tests.support import settled

COMPOSE_FILE = Path(__file__).parents[2] / "docker" / "compose.yaml"
JOBS = 6
SCENARIO_TIMEOUT = 60.0  # an upper bound on the whole run once the nodes are up, never a timing
PHASE = {"name": "work", "command": ["sh", "-c", "echo started; sleep 2; echo finished"]}
TERMINAL = ("completed", "failed", "cancelled")
# What each role runs under the supervisor, as /readyz names it.
SUPERVISED = {
    "sequencer": "sequencer",
    "projections": "projection-",
    "webhooks": "webhook-",
    "reaper": "reaper",
}
# Short leases, retries, polls and webhook leases, so that what the kills leave behind is
# picked up within the test's bounds; no rate limits for the test's polling; webhooks may reach
# the loopback receiver.
FAST = {
    "HELIX_SEQUENCER_POLL_INTERVAL": "0.2",
    "HELIX_PROJECTION_POLL_INTERVAL": "0.2",
    "HELIX_WORKER_LEASE_S": "3",
    "HELIX_WORKER_HEARTBEAT_INTERVAL": "0.5",
    "HELIX_JOB_RETRY_BASE_S": "0.2",
    "HELIX_JOB_RETRY_CAP_S": "1",
    "HELIX_REAPER_INTERVAL": "0.2",
    "HELIX_MAX_CONCURRENT_JOBS": str(JOBS),
    "HELIX_RATE_LIMIT_PER_MINUTE": "0",
    "HELIX_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "0",
    "HELIX_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "HELIX_WEBHOOK_RETRY_SCHEDULE": "0,0.2,0.5,1,1,1,1,1,1,1",
    "HELIX_WEBHOOK_POLL_INTERVAL": "0.2",
    "HELIX_WEBHOOK_CONNECT_TIMEOUT": "1",
    "HELIX_WEBHOOK_TIMEOUT": "2",
    "HELIX_WEBHOOK_LEASE": "3",
}


@attrs.frozen
class Service:
    """A compose service that runs Helix: its name and its `command` (the arguments of `helix`)."""

    name: str
    command: tuple[str, ...]

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(self.command[self.command.index("--role") + 1].split(","))


def compose() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return found


def compose_services(kind: str | None = None) -> list[Service]:
    """The services that run `helix serve` or `helix worker` (only those of `kind`, if given)."""
    return [
        Service(name, tuple(spec["command"]))
        for name, spec in compose()["services"].items()
        if spec.get("command") and spec["command"][0] in ("serve", "worker")
        and kind in (None, spec["command"][0])
    ]  # fmt: skip


def test_the_compose_file_runs_every_role_and_keeps_secrets_out_of_itself() -> None:
    nodes = compose_services("serve")
    assert set().union(*(s.roles for s in nodes)) == set(ROLES)
    assert len([s for s in nodes if s.roles == {"api"}]) >= 2
    # The sequencer's leadership has somewhere to fail over to.
    assert len([s for s in nodes if "sequencer" in s.roles]) >= 2
    assert all("--no-worker" in s.command for s in nodes if "api" in s.roles)
    workers = compose_services("worker")
    assert len(workers) >= 2
    # Phase commands are untrusted: their workers get neither the database's URL nor its network.
    specs = compose()["services"]
    for worker in workers:
        assert "HELIX_DATABASE_URL" not in specs[worker.name]["environment"]
        assert not set(specs[worker.name]["networks"]) & set(specs["postgres"]["networks"])
    text = COMPOSE_FILE.read_text()
    for secret in ("POSTGRES_PASSWORD", "HELIX_JWT_SECRET", "HELIX_SECRETS_KEY"):
        assert f"${{{secret}:?" in text, secret


@attrs.define
class Topology:
    """The running processes: the nodes by service name, the workers by name."""

    nodes: dict[str, Server] = attrs.field(factory=dict)
    workers: dict[str, asyncio.subprocess.Process] = attrs.field(factory=dict)

    def api(self, i: int) -> Server:
        apis = [s for name, s in sorted(self.nodes.items()) if name.startswith("api")]
        return apis[i % len(apis)]

    def all(self) -> list[asyncio.subprocess.Process]:
        return [s.proc for s in self.nodes.values()] + list(self.workers.values())


@pytest.fixture
def phase_users() -> Iterator[list[str]]:
    """As root, a phase user per worker (one user runs one worker's phases); nothing of theirs
    outlives the test, not even what a killed worker's phase left running."""
    names = [f"helix-topology-{s.name}" for s in compose_services("worker")]
    yield names
    if os.geteuid() == 0:
        for name in names:
            with contextlib.suppress(KeyError):
                stop_and_kill(pwd.getpwnam(name).pw_uid)


@pytest.fixture
async def keys(database_url: str, tmp_path: Path) -> dict[str, str]:
    """An admin's and a worker user's API keys, made with the CLI as an operator makes them."""
    env = helix_env(database_url, tmp_path / "cli")
    made = {}
    for username, role in (("root", "admin"), ("workers", "worker")):
        code, out = await run_helix(env, "users", "create", username, "--role", role)
        assert code == 0, out
        code, key = await run_helix(env, "keys", "create", "--user", username, "--name", "t")
        assert code == 0, key
        made[role] = key.strip()
    return made


@pytest.fixture
async def topology(
    database_url: str, tmp_path: Path, keys: dict[str, str], phase_users: list[str]
) -> AsyncIterator[Topology]:
    secrets = {
        "HELIX_JWT_SECRET": base64.b64encode(os.urandom(32)).decode(),
        "HELIX_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    running = Topology()
    try:
        for service in compose_services("serve"):
            port = free_port()
            env = helix_env(database_url, tmp_path / service.name, **FAST, **secrets)
            proc = await asyncio.create_subprocess_exec(
                *HELIX, *service.command, "--host", "127.0.0.1", "--port", str(port),
                env=env, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            running.nodes[service.name] = Server(proc, f"http://127.0.0.1:{port}")
        async with aiohttp.ClientSession() as session:
            for node in running.nodes.values():
                await wait_ready(session, node.url)
        workers = compose_services("worker")
        for i, (service, phase_user) in enumerate(zip(workers, phase_users, strict=True)):
            command = list(service.command)
            del command[command.index("--workdir") : command.index("--workdir") + 2]
            env = helix_env(database_url, tmp_path / service.name, HELIX_WORKER_KEY=keys["worker"])
            del env["HELIX_DATABASE_URL"]  # a worker knows the API only
            running.workers[service.name] = await asyncio.create_subprocess_exec(
                *HELIX, *command, "--server", running.api(i).url,
                "--workdir", str(tmp_path / service.name / "workspaces"),
                "--phase-user", phase_user, "--claim-wait", "1", "--quiet", env=env,
            )  # fmt: skip
        yield running
    finally:
        for proc in running.all():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in running.all():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, admin: dict[str, str], **kw: Any
) -> Any:
    async with session.request(method, url, headers=admin, **kw) as resp:
        assert resp.status < 300, (method, url, resp.status, await resp.text())
        return await resp.json()


async def _finished(session: aiohttp.ClientSession, url: str, admin: dict[str, str]) -> Any:
    """The job at `url` once it has ended."""
    while (job := await _call(session, "GET", url, admin))["status"] not in TERMINAL:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return job


async def _running_job_of(pool: asyncpg.Pool, worker_name: str) -> Any:
    while True:
        job_id = await pool.fetchval(
            "SELECT j.job_id FROM jobs j JOIN workers w ON j.worker_id = w.worker_id::text "
            "WHERE w.name = $1 AND j.status = 'running'",
            worker_name,
        )
        if job_id is not None:
            return job_id
        await asyncio.sleep(0.05)


async def test_killing_the_sequencer_leader_and_a_worker_mid_run_loses_and_repeats_nothing(
    topology: Topology, keys: dict[str, str], database_url: str
) -> None:
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    receiver = Receiver(port=free_port())
    await receiver.start()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(SCENARIO_TIMEOUT):
            # Background-only nodes answer their probes, and their readiness names their roles.
            for name, node in topology.nodes.items():
                roles = compose_roles(name)
                async with session.get(f"{node.url}/healthz") as resp:
                    assert resp.status == 200
                ready = await wait_ready(session, node.url)
                supervised = ready["roles"]["roles"]
                for role in roles - {"api"}:
                    assert any(r.startswith(SUPERVISED[role]) for r in supervised), (name, ready)
                assert all(r["state"] == "running" for r in supervised.values()), ready
                if "api" not in roles:
                    async with session.get(f"{node.url}/api/v1/projects") as resp:
                        assert resp.status == 404
                        assert (await resp.json())["error"]["code"] == "NOT_FOUND"

            hook = await _call(
                session, "POST", f"{topology.api(0).url}/api/v1/webhooks", admin,
                json={"url": receiver.url, "event_types": ["project.*", "job.*"]},
            )  # fmt: skip
            receiver.secrets.append(hook["secret"])

            jobs = []
            for i in range(JOBS):  # each step on the other API node
                url = f"{topology.api(i).url}/api/v1/projects"
                project = await _call(
                    session, "POST", url, admin, json={"name": f"p{i}", "phases": [PHASE]}
                )
                url = f"{topology.api(i + 1).url}/api/v1/projects/{project['id']}"
                await _call(session, "POST", f"{url}/ready", admin)
                executed = await _call(session, "POST", f"{url}/execute", admin)
                jobs.append(executed["job_id"])

            # Mid-run: worker-1 runs a job, and the sequencer leads on a background node.
            victim_name = sorted(topology.workers)[0]
            victim_job = await _running_job_of(pool, victim_name)
            leader = await pool.fetchval("SELECT leader FROM sequencer_state")
            leader_pid = int(leader.split(":")[1])
            [leader_node] = [n for n, s in topology.nodes.items() if s.proc.pid == leader_pid]
            topology.workers[victim_name].kill()
            topology.nodes[leader_node].proc.kill()
            await topology.workers[victim_name].wait()
            await topology.nodes[leader_node].proc.wait()

            # Every job completes, through either API node.
            for i, job_id in enumerate(jobs):
                job = await _finished(session, f"{topology.api(i).url}/api/v1/jobs/{job_id}", admin)
                assert job["status"] == "completed", job

            # The dead worker's job was given up on and claimed again, by the other worker.
            rows = await pool.fetch(
                "SELECT type, (data->>'attempt')::int AS attempt, data->>'worker_id' AS worker_id "
                "FROM events WHERE stream_id = $1 ORDER BY version",
                f"job-{victim_job}",
            )
            types = [r["type"] for r in rows]
            assert "job.stuck" in types and "job.retry_scheduled" in types, types
            claims = [r for r in rows if r["type"] == "job.claimed"]
            assert [c["attempt"] for c in claims] == list(range(1, len(claims) + 1)), claims
            assert len(claims) >= 2 and claims[0]["worker_id"] != claims[-1]["worker_id"]

            # A new leader positions everything: dense positions, none twice.
            head = await settled(pool, timeout=SCENARIO_TIMEOUT)
            positions = [r["position"] for r in await pool.fetch(
                "SELECT position FROM events ORDER BY position"
            )]  # fmt: skip
            assert positions == list(range(1, head + 1))

            # Every project and job event reaches the receiver, signed, at least once.
            wanted = {
                str(r["event_id"])
                for r in await pool.fetch(
                    "SELECT event_id FROM events WHERE type LIKE 'project.%' OR type LIKE 'job.%'"
                )
            }
            await receiver.wait_for(lambda got: wanted <= {r.webhook_id for r in got})
            assert {r.webhook_id for r in receiver.received} <= wanted
            assert all(r.verified for r in receiver.received)
            assert {int(r.body["position"]) for r in receiver.received} <= set(positions)

            # The surviving background nodes lead and are ready.
            for name, node in topology.nodes.items():
                if name != leader_node:
                    ready = await wait_ready(session, node.url)
                    assert ready["sequencer"]["leader"] is True
    finally:
        await pool.close()
        await receiver.stop()


def compose_roles(service: str) -> frozenset[str]:
    [found] = [s for s in compose_services() if s.name == service]
    return found.roles
