from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from helix.bootstrap import LogNode
from helix.eventstore import EncodedEvent, verify_chain


def helix(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HELIX_DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "helix.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def _fill(node: LogNode, n: int) -> None:
    for i in range(n):
        await node.store.append(
            f"t-{i % 3}",
            i // 3,
            [EncodedEvent(type="test.happened", schema_version=1, data={"i": i, "x": 0.1 * i})],
        )
    assert await node.store.wait_for_position(n, timeout=10)


async def test_an_intact_log_verifies(node: LogNode, database_url: str) -> None:
    await _fill(node, 12)
    assert node.pool is not None
    report = await verify_chain(node.pool)
    assert report.ok and report.verified_head == 12
    result = helix(database_url, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "12 events verified" in result.stdout


async def test_changing_one_events_data_fails_verification_at_that_position(
    node: LogNode, database_url: str
) -> None:
    await _fill(node, 12)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """UPDATE events SET data = jsonb_set(data, '{i}', '99') WHERE position = 7"""
        )
    finally:
        await conn.close()
    assert node.pool is not None
    report = await verify_chain(node.pool)
    assert not report.ok and report.first_bad_position == 7 and report.verified_head == 6
    result = helix(database_url, "audit", "verify")
    assert result.returncode == 1
    assert "position 7" in result.stderr


async def test_a_removed_event_fails_verification_at_the_gap(node: LogNode) -> None:
    await _fill(node, 6)
    assert node.pool is not None
    await node.pool.execute("DELETE FROM events WHERE position = 4")
    report = await verify_chain(node.pool)
    assert not report.ok and report.first_bad_position == 4


async def test_two_events_swapping_positions_fails_verification(node: LogNode) -> None:
    await _fill(node, 6)
    assert node.pool is not None
    await node.pool.execute(
        "UPDATE events SET position = -2 WHERE position = 2;"
        "UPDATE events SET position = 2 WHERE position = 3;"
        "UPDATE events SET position = 3 WHERE position = -2"
    )
    report = await verify_chain(node.pool, page_size=2)
    assert not report.ok and report.first_bad_position == 2
