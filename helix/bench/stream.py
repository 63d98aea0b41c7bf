"""`helix bench stream`: live streams measured end to end over real HTTP.

- append → SSE client latency (p50, p99) with 1, 100 and 1,000 concurrent clients, beside raw
  PostgreSQL's NOTIFY → LISTEN latency on the same server;
- database work per appended event with few and many clients: the tailer's own log reads
  (counted by the tailer) and the database's committed transactions (`pg_stat_database.
  xact_commit` deltas, which also count the appends and the sequencer's batches);
- catch-up: one SSE client replaying N events from position 0, beside raw PostgreSQL paging
  through the same rows with asyncpg (before and after the replay, averaged).

The API runs in this process, the SSE clients in one process of their own and the sequencer in
another, as a deployment would separate them; on one machine they still share its cores, so the
latencies include the clients' own parsing and are an upper bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence

import asyncpg
import attrs
from aiohttp import web

from helix.api.app import create_app
from helix.api.streams import TAILER
from helix.auth.accounts import Accounts
from helix.bench.append import start_sequencer_process
from helix.bench.common import percentile
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain.user import Role
from helix.eventstore import EncodedEvent
from helix.logs import ACCESS_LOGGER
from helix.services import system_caller

METADATA = {"actor": "bench", "source": "helix bench stream"}
BENCH_CALLER = attrs.evolve(system_caller("bench"), actor="bench", source="helix bench stream")
RAW_PAGE = "SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2"


@attrs.frozen
class Level:
    clients: int
    events: int
    latencies_ms: list[float]
    tailer_reads: int
    transactions: int

    def summary(self) -> str:
        ms = self.latencies_ms
        return (
            f"{self.clients:>7}  {percentile(ms, 50):>8.1f}  {percentile(ms, 99):>8.1f}  "
            f"{self.tailer_reads / self.events:>12.3f}  {self.transactions / self.events:>9.2f}"
        )


async def _transactions(pool: asyncpg.Pool, settle: float) -> int:
    """Committed transactions so far. Backends flush their statistics lazily (an idle one up
    to 10 s later), so the count is read after `settle` seconds of quiet."""
    await asyncio.sleep(settle)
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    return int(value)


async def measure_level(
    node: LogNode,
    app: web.Application,
    base: str,
    key: str,
    clients: int,
    events: int,
    settle: float,
    interval: float,
) -> Level:
    assert node.pool is not None
    url = f"{base}/api/v1/events/stream?type=bench.tick"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "helix.bench.stream_clients", url, key, str(clients), str(events),
        str(events * interval + 60), stdout=asyncio.subprocess.PIPE, limit=2**28,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        if line.strip() != b"ready":
            raise RuntimeError(f"the SSE clients did not start: {line!r}")
        tailer = app[TAILER]
        transactions = await _transactions(node.pool, settle)
        reads = tailer.queries()
        stream = f"bench-{uuid.uuid4().hex}"
        for n in range(events):
            data = {"t": time.clock_gettime(time.CLOCK_MONOTONIC)}
            event = EncodedEvent(type="bench.tick", schema_version=1, data=data)
            await node.store.append(stream, n, [event], metadata=METADATA)
            await asyncio.sleep(interval)
        result = json.loads(await asyncio.wait_for(proc.stdout.readline(), events * interval + 90))
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if result["unfinished"] or len(result["latencies_ms"]) != clients * events:
        raise RuntimeError(
            f"{result['unfinished']} of {clients} clients did not receive all {events} events"
        )
    return Level(
        clients=clients,
        events=events,
        latencies_ms=result["latencies_ms"],
        tailer_reads=tailer.queries() - reads,
        transactions=await _transactions(node.pool, settle) - transactions,
    )


async def notify_latency(url: str, samples: int) -> list[float]:
    """Raw PostgreSQL: NOTIFY with a timestamp, received by a LISTEN connection."""
    listener, sender = await asyncpg.connect(url), await asyncpg.connect(url)
    got: asyncio.Queue[float] = asyncio.Queue()

    def on_notify(_c: object, _p: int, _ch: str, payload: str) -> None:
        got.put_nowait(time.perf_counter() - float(payload))

    try:
        await listener.add_listener("bench_raw", on_notify)
        latencies = []
        for _ in range(samples):
            await sender.execute(f"NOTIFY bench_raw, '{time.perf_counter()!r}'")
            latencies.append(await asyncio.wait_for(got.get(), 5) * 1000)
            await asyncio.sleep(0.005)
        return latencies
    finally:
        await listener.close()
        await sender.close()


async def _raw_paging_rate(node: LogNode) -> float:
    """Rows/s of raw asyncpg paging through the whole log by position."""
    assert node.pool is not None
    started, position, rows = time.perf_counter(), 0, 0
    async with node.pool.acquire() as conn:
        while page := await conn.fetch(RAW_PAGE, position, 1000):
            rows += len(page)
            position = page[-1]["position"]
    return rows / (time.perf_counter() - started)


async def catch_up(node: LogNode, base: str, key: str, total: int) -> tuple[float, float]:
    """(SSE events/s, raw rows/s) replaying `total` events from position 0."""
    assert node.pool is not None
    stream = f"bench-{uuid.uuid4().hex}"
    payload = {"note": "x" * 96}
    for start in range(0, total, 1000):
        batch = [
            EncodedEvent(type="bench.replayed", schema_version=1, data=payload)
            for _ in range(min(1000, total - start))
        ]
        await node.store.append(stream, start, batch, metadata=METADATA)
    count = int(await node.pool.fetchval("SELECT count(*) FROM events"))
    if not await node.store.wait_for_position(count, timeout=300):
        raise RuntimeError("the sequencer did not position the catch-up events in time")
    # Raw paging before and after the replay, averaged: the machine's load drifts during a
    # run, and one measurement on one side would lean the ratio with it.
    raw_before = await _raw_paging_rate(node)
    url = f"{base}/api/v1/events/stream?after=0&type=bench.replayed"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "helix.bench.stream_clients", "replay", url, key,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 600)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if not line.strip():
        raise RuntimeError(f"the replay client failed (exit status {proc.returncode})")
    result = json.loads(line)
    received = int(result["received"])
    sse_rate = received / float(result["seconds"])
    raw_rate = (raw_before + await _raw_paging_rate(node)) / 2
    if received != total:
        raise RuntimeError(f"catch-up received {received} of {total} events")
    return sse_rate, raw_rate


async def run(
    url: str,
    settings: Settings,
    *,
    levels: Sequence[int] = (1, 100, 1000),
    events: int = 200,
    interval: float = 0.05,
    catch_up_events: int = 100_000,
    settle: float = 11.0,
) -> int:
    settings = attrs.evolve(settings, rate_limit_per_minute=0, stream_buffer_size=10_000)
    # The benchmark's own requests are not an operator's traffic: no access lines among its
    # figures.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    node = LogNode(url, settings, sequencer=False)
    await node.start()
    sequencer = await start_sequencer_process(url)
    runner: web.AppRunner | None = None
    try:
        accounts = Accounts(node.store)
        user = await accounts.create_user("bench", Role.ADMIN, None, caller=BENCH_CALLER)
        _, key = await accounts.create_key(user.user_id, "bench", caller=BENCH_CALLER)
        app = create_app(node, settings)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        raw = await notify_latency(url, 200)
        results = [
            await measure_level(node, app, base, key, n, events, settle, interval) for n in levels
        ]
        sse_rate, raw_rate = await catch_up(node, base, key, catch_up_events)
    finally:
        if runner is not None:
            await runner.cleanup()
        await node.stop()
        sequencer.terminate()
        await sequencer.wait()

    print(
        f"raw PostgreSQL NOTIFY -> LISTEN: p50 {percentile(raw, 50):.2f} ms, "
        f"p99 {percentile(raw, 99):.2f} ms"
    )
    print(
        f"append -> SSE client, {events} appends per level (one every {interval * 1000:g} ms, "
        "clients in a separate process):"
    )
    print(f"{'clients':>7}  {'p50 ms':>8}  {'p99 ms':>8}  {'queries/event':>12}  {'xact/event':>9}")
    for level in results:
        print(level.summary())
    print(
        "queries/event: the streams' own queries (the tailer's log reads, owner look-ups and "
        "catch-up reads, counted by the tailer); xact/event: pg_stat_database.xact_commit "
        f"delta per event, read after {settle:g} s of quiet each time (it includes the appends, "
        "the sequencer's batches and the head watcher's polls)"
    )
    print(
        f"catch-up of {catch_up_events} events to one SSE client: {sse_rate:.0f} events/s; "
        f"raw asyncpg paging (mean of before and after): {raw_rate:.0f} rows/s; "
        f"ratio {sse_rate / raw_rate:.2f}"
    )
    return 0
