"""`helix bench jobs`: the job path end to end over real HTTP, beside procrastinate.

A job here is what a user and a worker do with one: the user executes a project (one no-op
phase), a worker claims it, reports the phase's start, then its end with the progress and the
job's completion in one request, the requests the reference worker makes, each with its
idempotency key. Measured:

- jobs/s with 1 and 8 workers: N jobs executed by as many concurrent clients as there are
  workers while the workers run them, until the last one completed;
- light-load latency: one job at a time, from the execute request to the completion report's
  answer (the job is completed and committed by then), p50 and p99;
- database statements per job at 8 workers: every statement the Helix process sends (API,
  sequencer, projection runner, reaper, webhook roles), counted by an asyncpg query logger on
  each of its connections, transaction control (BEGIN, COMMIT, savepoints) apart, and its
  transactions (COMMITs) per job; and, for Helix and the peer alike, what the server counted in
  each one's database: pg_stat_statements calls and the WAL records they wrote (the embedded
  server loads the extension; another server shows them where it does too).

The peer, procrastinate (the optional `bench` extra), runs the same number of no-op jobs with
the same worker counts on the same PostgreSQL server in the same run; `--no-peer` leaves it out.
The API, its background roles and the workers share this process, as `helix serve --worker`
would; the figures are for one 2-core machine at most, and the ratios are what compare.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Sequence

import aiohttp
import attrs
from aiohttp import web
from asyncpg.connection import LoggedQuery

from helix.api.app import create_app
from helix.bench.common import percentile, server_counts
from helix.bootstrap import Components, LogNode
from helix.cli.serve import background_roles
from helix.config import Settings
from helix.domain.user import Role
from helix.logs import ACCESS_LOGGER
from helix.services import system_caller
from helix.worker import reports
from helix.worker.protocol import Client

BENCH_CALLER = attrs.evolve(system_caller("bench"), actor="bench", source="helix bench jobs")
PHASE = "noop"
CLAIM_WAIT_S = 1  # short, so idle workers stop soon after the last job


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


class Counter:
    """Statements sent by the Helix process (transaction control apart), and its COMMITs."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0

    def __call__(self, query: LoggedQuery) -> None:
        verb = query.query.lstrip()[:9].upper()
        if verb.startswith("COMMIT"):
            self.commits += 1
        elif not verb.startswith(TRANSACTION_CONTROL):
            self.statements += 1


@attrs.frozen
class Figures:
    rate_k1: float
    rate_k8: float
    p50_ms: float
    p99_ms: float
    statements: float = float("nan")
    transactions: float = float("nan")
    server_statements: float = float("nan")
    wal_records: float = float("nan")


class Bench:
    """A running Helix node with its API on a local port, a user and a worker key."""

    def __init__(self, base: str, session: aiohttp.ClientSession, user_key: str, worker_key: str):
        self.base = base
        self.session = session
        self.user_headers = {"Authorization": f"Bearer {user_key}"}
        self.worker_key = worker_key
        self.completed: dict[str, asyncio.Future[float]] = {}

    async def _post(self, path: str, body: object) -> dict[str, object]:
        async with self.session.post(
            f"{self.base}{path}", json=body, headers=self.user_headers
        ) as resp:
            data: dict[str, object] = await resp.json()
            if resp.status >= 300:
                raise RuntimeError(f"POST {path}: {resp.status} {data}")
            return data

    async def projects(self, count: int, concurrency: int = 8) -> list[str]:
        """`count` ready projects of one no-op phase (set up before anything is timed)."""
        made: list[str] = []
        remaining = iter(range(count))

        async def make() -> None:
            for n in remaining:
                body = {"name": f"bench {n}", "phases": [{"name": PHASE}]}
                project = await self._post("/api/v1/projects", body)
                await self._post(f"/api/v1/projects/{project['id']}/ready", {})
                made.append(str(project["id"]))

        await asyncio.gather(*(make() for _ in range(concurrency)))
        return made

    async def execute(self, project_id: str) -> str:
        job = await self._post(f"/api/v1/projects/{project_id}/execute", {})
        job_id = str(job["job_id"])
        self.completed.setdefault(job_id, asyncio.get_running_loop().create_future())
        return job_id

    async def worker(self, name: str, stop: asyncio.Event) -> None:
        """The reference worker's requests for a job of one phase that does nothing."""
        client = Client(self.base, self.worker_key, self.session)
        registration = await client.register(
            name=name, hostname="bench", capabilities=[PHASE], resources={}
        )
        while not stop.is_set():
            claim = await client.claim(registration.worker_id, wait=CLAIM_WAIT_S)
            if claim is None:
                continue
            token = claim.lease.fencing_token
            # As the reference worker does: the last phase's end and the job's in one request.
            for batch in (
                [reports.phase_started(PHASE)],
                [reports.phase_completed(PHASE), reports.progress(100), reports.job_completed()],
            ):
                key = str(uuid.uuid4())
                await client.report(claim.job_id, token, batch, idempotency_key=key)
            done = self.completed.setdefault(
                claim.job_id, asyncio.get_running_loop().create_future()
            )
            done.set_result(time.perf_counter())

    async def throughput(self, projects: Sequence[str], workers: int) -> float:
        stop = asyncio.Event()
        running = [asyncio.create_task(self.worker(f"w{n}", stop)) for n in range(workers)]
        try:
            started = time.perf_counter()
            queue = iter(projects)

            async def produce() -> list[str]:
                return [await self.execute(p) for p in queue]

            made = [j for batch in await asyncio.gather(*(produce() for _ in range(workers)))
                    for j in batch]  # fmt: skip
            ends = await asyncio.wait_for(asyncio.gather(*(self.completed[j] for j in made)), 300)
            return len(made) / (max(ends) - started)
        finally:
            stop.set()
            await asyncio.gather(*running)

    async def latency(self, projects: Sequence[str]) -> tuple[float, float]:
        stop = asyncio.Event()
        worker = asyncio.create_task(self.worker("latency", stop))
        samples = []
        try:
            await asyncio.sleep(0.2)  # the worker waits in its claim
            for project_id in projects:
                started = time.perf_counter()
                job_id = await self.execute(project_id)
                ended = await asyncio.wait_for(self.completed[job_id], 60)
                samples.append((ended - started) * 1000)
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await worker
        return percentile(samples, 50), percentile(samples, 99)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def run_helix(url: str, settings: Settings, *, jobs: int, samples: int) -> Figures:
    # One project per job, all of one user's, run by 8 workers at most at once.
    settings = attrs.evolve(
        settings,
        rate_limit_per_minute=0,
        max_concurrent_jobs=max(settings.max_concurrent_jobs, 8),
        max_projects_per_user=max(settings.max_projects_per_user, 2 * jobs + samples),
    )
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    counter = Counter()
    node = LogNode(url, settings, query_logger=counter)
    await node.start()
    components = await Components.start(node, settings)
    roles = background_roles(node, settings, endpoints=components.endpoints)
    runner: web.AppRunner | None = None
    try:
        for role in roles:
            await role.start()
        accounts = components.accounts
        user = await accounts.create_user("bench", Role.USER, None, caller=BENCH_CALLER)
        _, user_key = await accounts.create_key(user.user_id, "bench", caller=BENCH_CALLER)
        agent = await accounts.create_user("bench-worker", Role.WORKER, None, caller=BENCH_CALLER)
        _, worker_key = await accounts.create_key(agent.user_id, "bench", caller=BENCH_CALLER)
        app = create_app(node, settings, components)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with aiohttp.ClientSession() as session:
            bench = Bench(f"http://127.0.0.1:{port}", session, user_key, worker_key)
            ready = await bench.projects(2 * jobs + samples)
            rate_k1 = await bench.throughput(ready[:jobs], 1)
            statements, commits = counter.statements, counter.commits
            before = await server_counts(url)
            rate_k8 = await bench.throughput(ready[jobs : 2 * jobs], 8)
            server, wal = (await server_counts(url)).per(before, jobs)
            per_job = (counter.statements - statements) / jobs
            transactions = (counter.commits - commits) / jobs
            p50, p99 = await bench.latency(ready[2 * jobs :])
        return Figures(rate_k1, rate_k8, p50, p99, per_job, transactions, server, wal)
    finally:
        if runner is not None:
            components.services.workers.stop_waiting()
            await runner.cleanup()
        for role in reversed(roles):
            await role.stop()
        await components.stop()
        await node.stop()


async def run_peer(url: str, *, jobs: int, samples: int) -> Figures:
    from helix.bench.jobs_peer import Peer

    async with Peer(url) as peer:
        rate_k1, _ = await peer.throughput(jobs, 1)
        before = await server_counts(url)
        rate_k8, statements = await peer.throughput(jobs, 8)
        server, wal = (await server_counts(url)).per(before, jobs)
        p50, p99 = await peer.latency(samples)
    return Figures(rate_k1, rate_k8, p50, p99, statements, statements, server, wal)


def report(helix: Figures, peer: Figures | None, jobs: int, samples: int) -> None:
    print(f"helix bench jobs: {jobs} no-op jobs per worker count, {samples} latency samples")
    print(f"{'':<28}{'helix':>12}{'procrastinate':>15}{'ratio':>8}")

    def row(label: str, ours: float, theirs: float | None, unit: str = "") -> None:
        if theirs is None:
            print(f"{label:<28}{ours:>12.1f}{'-':>15}{'-':>8}")
        else:
            print(f"{label:<28}{ours:>12.1f}{theirs:>15.1f}{ours / theirs:>8.2f}{unit}")

    row("jobs/s, 1 worker", helix.rate_k1, None if peer is None else peer.rate_k1)
    row("jobs/s, 8 workers", helix.rate_k8, None if peer is None else peer.rate_k8)
    row(
        "execute -> completed p50 ms",
        helix.p50_ms,
        None if peer is None else peer.p50_ms,
        " (x slower)",
    )
    row(
        "execute -> completed p99 ms",
        helix.p99_ms,
        None if peer is None else peer.p99_ms,
        " (x slower)",
    )
    row("statements per job, k8", helix.statements, None if peer is None else peer.statements)
    row("transactions per job, k8", helix.transactions, None if peer is None else peer.transactions)
    row(
        "server statements/job, k8",
        helix.server_statements,
        None if peer is None else peer.server_statements,
    )
    row("WAL records per job, k8", helix.wal_records, None if peer is None else peer.wal_records)
    print(
        "statements: every one the Helix process sent, counted by an asyncpg query logger, and "
        "every query procrastinate's connector sent, each in a transaction of its own; "
        "BEGIN/COMMIT not counted as statements. Server statements and WAL records: "
        "pg_stat_statements in each one's database over the 8-worker run (nan where the server "
        "does not load it), the probes and transaction control apart"
    )
    if peer is None:
        print("jobs ratio k8: - (no peer)")
    else:
        print(f"jobs ratio k8: {helix.rate_k8 / peer.rate_k8:.2f}")
