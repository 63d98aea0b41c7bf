"""The peer of `helix bench jobs`: procrastinate running the same number of no-op jobs on the
same PostgreSQL server (a scratch database of its own), with the same worker counts.

Its statements are counted where it sends them: every query its connector executes (each one a
call of one of its SQL functions or statements) is one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import procrastinate

from helix.bench.common import percentile

POLL_S = 0.001  # how often the latency probe looks for the job's `succeeded`


class CountingConnector(procrastinate.PsycopgConnector):
    """procrastinate's own connector, counting the statements it sends."""

    statements = 0

    async def execute_query_async(self, query: Any, **arguments: Any) -> None:
        self.statements += 1
        await super().execute_query_async(query, **arguments)

    async def execute_query_one_async(self, query: Any, **arguments: Any) -> Any:
        self.statements += 1
        return await super().execute_query_one_async(query, **arguments)

    async def execute_query_all_async(self, query: Any, **arguments: Any) -> Any:
        self.statements += 1
        return await super().execute_query_all_async(query, **arguments)


class Peer:
    def __init__(self, url: str) -> None:
        self.connector = CountingConnector(conninfo=url)  # asyncpg's URL is a libpq URI too
        self.app = procrastinate.App(connector=self.connector)
        self.done = 0
        self.finished = asyncio.Event()
        self.target = 0

        @self.app.task(name="noop")
        async def noop() -> None:
            self.done += 1
            if self.done >= self.target:
                self.finished.set()

        self.noop = noop

    async def __aenter__(self) -> Peer:
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.app.close_async()

    async def _succeeded(self) -> int:
        row = await self.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
        self.connector.statements -= 1  # the benchmark's own probe
        return int(row["n"])

    def _worker(self, workers: int) -> asyncio.Task[None]:
        return asyncio.create_task(
            self.app.run_worker_async(
                concurrency=workers,
                wait=True,
                listen_notify=True,
                install_signal_handlers=False,
                delete_jobs="never",
            )
        )

    async def throughput(self, jobs: int, workers: int) -> tuple[float, float]:
        """(jobs/s, statements per job): `jobs` deferred by `workers` concurrent producers
        while a worker of that concurrency runs them, until the last one has succeeded."""
        before = await self._succeeded()
        self.done, self.target = 0, jobs
        self.finished.clear()
        worker = self._worker(workers)
        await asyncio.sleep(0.2)  # the worker listens before the first job
        statements = self.connector.statements
        started = time.perf_counter()
        queue = iter(range(jobs))

        async def produce() -> None:
            for _ in queue:
                await self.noop.defer_async()

        await asyncio.gather(*(produce() for _ in range(workers)))
        await asyncio.wait_for(self.finished.wait(), 300)
        # The last task body returned; its job is marked succeeded just after.
        while True:
            if await self._succeeded() >= before + jobs:
                break
            await asyncio.sleep(POLL_S)
        seconds = time.perf_counter() - started
        sent = self.connector.statements - statements
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        return jobs / seconds, sent / jobs

    async def latency(self, samples: int) -> tuple[float, float]:
        """(p50, p99 ms) from a defer to the job's `succeeded`, one job at a time."""
        worker = self._worker(1)
        await asyncio.sleep(0.2)
        latencies = []
        try:
            for _ in range(samples):
                started = time.perf_counter()
                job_id = await self.noop.defer_async()
                while True:
                    row = await self.connector.execute_query_one_async(
                        "SELECT status FROM procrastinate_jobs WHERE id = %(id)s", id=job_id
                    )
                    if row["status"] == "succeeded":
                        break
                    await asyncio.sleep(POLL_S)
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.01)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        return percentile(latencies, 50), percentile(latencies, 99)
