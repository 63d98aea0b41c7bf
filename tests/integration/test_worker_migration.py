"""Revision 0008 on a database with workers: the registry is set from the log, liveness kept."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from helix import migrate
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import worker
from helix.serialization import default_registry
from projections import registry
from projections.rebuild import rebuild

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
USER = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
BUSY, GONE, CLAIMED_BACK = (uuid.UUID(f"00000000-0000-4000-8000-00000000000{i}") for i in (1, 2, 3))
JOB = uuid.uuid4()


async def _append(conn: asyncpg.Connection, events: list[Any]) -> None:
    """Events as revision 0005's worker service wrote them, one stream per worker."""
    codec = default_registry()
    for version, event in enumerate(events, start=1):
        encoded = codec.encode(event)
        stream = worker.stream_id(event.worker_id)
        await conn.execute(
            "INSERT INTO events (event_id, stream_id, stream_type, version, type, data) "
            "VALUES ($1, $2, 'worker', $3, $4, $5)",
            uuid.uuid4(), stream, version, encoded.type, json.dumps(encoded.data),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO streams (stream_id, stream_type, version) VALUES ($1, 'worker', $2) "
            "ON CONFLICT (stream_id) DO UPDATE SET version = $2",
            stream, version,
        )  # fmt: skip


async def _old_row(conn: asyncpg.Connection, worker_id: uuid.UUID, **row: Any) -> None:
    await conn.execute(
        "INSERT INTO workers (worker_id, user_id, name, hostname, capabilities, resources, "
        "status, online, current_job_id, registered_at, last_heartbeat_at, offline_since) "
        "VALUES ($1, $2, 'w', 'box', '[\"shell\"]', $3, $4, $5, $6, $7, $8, $9)",
        worker_id, USER, json.dumps(row["resources"]), row["status"], row["online"],
        row.get("current_job_id"), T0, row["last_heartbeat_at"], row.get("offline_since"),
    )  # fmt: skip


def _registered(worker_id: uuid.UUID) -> worker.WorkerRegistered:
    return worker.WorkerRegistered(
        worker_id=worker_id, user_id=USER, name="w", hostname="box", capabilities=("shell",),
        resources={"cpus": 2}, at=T0,
    )  # fmt: skip


async def test_upgrading_keeps_every_worker_and_its_liveness_and_equals_a_rebuild(
    database_url: str, settings: Settings
) -> None:
    await migrate.downgrade(database_url, "0005")
    later = T0 + timedelta(minutes=5)
    conn = await asyncpg.connect(database_url)
    try:
        await _append(conn, [_registered(BUSY)])
        offline = worker.WorkerWentOffline(worker_id=GONE, last_heartbeat_at=T0, at=later)
        await _append(conn, [_registered(GONE), offline])
        offline = worker.WorkerWentOffline(worker_id=CLAIMED_BACK, last_heartbeat_at=T0, at=later)
        await _append(conn, [_registered(CLAIMED_BACK), offline])
        await _old_row(
            conn, BUSY, resources={"cpus": 2, "load": 1}, status="busy", online=True,
            current_job_id=JOB, last_heartbeat_at=later,
        )  # fmt: skip
        await _old_row(
            conn, GONE, resources={"cpus": 2}, status="offline", online=False,
            last_heartbeat_at=T0, offline_since=later,
        )  # fmt: skip
        # A claim used to set a worker online in place, with no event: the log says offline.
        await _old_row(
            conn, CLAIMED_BACK, resources={"cpus": 2}, status="busy", online=True,
            current_job_id=JOB, last_heartbeat_at=later,
        )  # fmt: skip
    finally:
        await conn.close()

    await migrate.upgrade(database_url)

    node = LogNode(database_url, settings)
    await node.start()
    try:
        pool = node.store.pool
        beats = {
            r["worker_id"]: dict(r) for r in await pool.fetch("SELECT * FROM worker_heartbeats")
        }
        assert beats[BUSY] == {
            "worker_id": BUSY, "status": "busy", "current_job_id": JOB,
            "resources": {"cpus": 2, "load": 1}, "last_heartbeat_at": later,
        }  # fmt: skip
        assert (beats[GONE]["status"], beats[GONE]["current_job_id"]) == ("idle", None)
        rows = {r["worker_id"]: dict(r) for r in await pool.fetch("SELECT * FROM workers")}
        assert {w: (r["online"], r["offline_since"], r["version"]) for w, r in rows.items()} == {
            BUSY: (True, None, 1),
            GONE: (False, later, 2),
            CLAIMED_BACK: (False, later, 2),
        }
        assert rows[BUSY]["resources"] == {"cpus": 2}  # as registered; the latest is liveness
        pruned = await pool.fetch("SELECT * FROM workers_pruned ORDER BY 1")

        await rebuild(node.store, registry.get("workers"))

        rebuilt = {r["worker_id"]: dict(r) for r in await pool.fetch("SELECT * FROM workers")}
        assert rebuilt == rows
        assert await pool.fetch("SELECT * FROM workers_pruned ORDER BY 1") == pruned
    finally:
        await node.stop()

    # And back: the old single table has its liveness again.
    await migrate.downgrade(database_url, "0005")
    conn = await asyncpg.connect(database_url)
    try:
        old = {r["worker_id"]: r for r in await conn.fetch("SELECT * FROM workers")}
    finally:
        await conn.close()
    assert (old[BUSY]["status"], old[BUSY]["current_job_id"]) == ("busy", JOB)
    assert json.loads(old[BUSY]["resources"]) == {"cpus": 2, "load": 1}
    assert (old[GONE]["status"], old[GONE]["last_heartbeat_at"]) == ("offline", T0)
