"""Workers survive an export → import: the registry is rebuilt from the log alone."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import attrs

from helix.audit.export import export_events
from helix.audit.importer import import_log
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.services import Caller, system_caller
from helix.services.unit import Writer
from helix.services.workers import WorkerService

RUNNER = Caller(user_id="00000000-0000-4000-8000-0000000000c1", name="runner", actor="user:runner")


async def registry_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM workers ORDER BY worker_id")]


async def test_an_imported_log_has_every_worker_as_registered_and_as_last_seen(
    node: LogNode, second_database_url: str, settings: Settings
) -> None:
    clock = [Writer(node.store).now()]
    writer = Writer(node.store, now=lambda: clock[0])
    workers = WorkerService(writer, attrs.evolve(settings, worker_offline_after=60))
    ids: list[UUID] = []
    for n in range(3):
        row = await workers.register(
            RUNNER, name=f"w{n}", hostname="box", capabilities=["shell"], resources={"n": n}
        )
        ids.append(row["worker_id"])
    clock[0] += timedelta(seconds=120)
    await workers.heartbeat(
        RUNNER, ids[0], status="idle", current_job=None, fencing_token=None, resources=None
    )
    assert await workers.mark_offline(system_caller("reaper")) == 2
    await workers.heartbeat(
        RUNNER, ids[1], status="busy", current_job=None, fencing_token=None, resources=None
    )
    assert node.pool is not None
    total = await node.pool.fetchval("SELECT count(*) FROM events")
    assert await node.store.wait_for_position(total, 10)
    before = await registry_rows(node.pool)
    assert [r["online"] for r in before] == [w in ids[:2] for w in sorted(ids)]
    out = io.StringIO()
    await export_events(node.pool, out)

    target = LogNode(second_database_url, settings)
    await target.start()
    try:
        assert target.pool is not None
        report = await import_log(target.store, io.StringIO(out.getvalue()))
        assert report.ok
        assert await registry_rows(target.pool) == before
        # Liveness is not in the log: an imported worker is idle since its registration.
        assert await target.pool.fetchval("SELECT count(*) FROM worker_heartbeats") == 0
        imported = WorkerService(Writer(target.store), settings)
        shown = await imported.get(RUNNER, ids[1])
        assert (shown["online"], shown["status"], shown["resources"]) == (True, "idle", {"n": 1})
        assert shown["last_heartbeat_at"] == shown["registered_at"]
    finally:
        await target.stop()
