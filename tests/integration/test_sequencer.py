from __future__ import annotations

import asyncio

import asyncpg

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.eventstore import EncodedEvent, Sequencer, verify_chain


def ev(n: int) -> EncodedEvent:
    return EncodedEvent(type="test.happened", schema_version=1, data={"n": n})


async def _leader(sequencers: list[Sequencer], timeout: float = 10.0) -> Sequencer:
    """The one sequencer that believes it leads. Right after a kill the old leader may still
    believe it for a moment (until its next query fails); wait until exactly one does."""
    async with asyncio.timeout(timeout):
        while True:
            leaders = [s for s in sequencers if s.is_leader]
            if len(leaders) == 1:
                return leaders[0]
            await asyncio.sleep(0.02)


async def test_killing_the_leaders_connection_hands_over_with_no_gap_and_no_duplicate(
    database_url: str,
) -> None:
    settings = Settings(sequencer_poll_interval=0.2, wakeup_interval=0.001)
    node = LogNode(database_url, settings, sequencer=False)
    await node.start()
    sequencers = [
        Sequencer(
            node.connector(f"seq{i}"), poll_interval=0.2, standby_interval=0.05, name=f"seq{i}"
        )
        for i in range(2)
    ]
    assert node._wakeups is not None
    for s in sequencers:
        node._wakeups.local.append(s.wake)
        await s.start()
    admin = await asyncpg.connect(database_url)
    try:
        first = await _leader(sequencers)

        async def write(writer: int) -> int:
            for n in range(60):
                await node.store.append(f"w{writer}-1", n, [ev(n)])
                await asyncio.sleep(0.002)
            return 60

        writers = [asyncio.create_task(write(i)) for i in range(4)]
        await asyncio.sleep(0.15)
        killed = await admin.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"helix-seq{sequencers.index(first)}",
        )
        assert killed
        total = sum(await asyncio.gather(*writers))
        assert await node.store.wait_for_position(total, timeout=15)
        await _leader(sequencers)  # exactly one leads again

        rows = await admin.fetch(
            "SELECT position, stream_id, version FROM events ORDER BY position"
        )
        assert [r["position"] for r in rows] == list(range(1, total + 1))
        per_stream: dict[str, list[int]] = {}
        for r in rows:
            per_stream.setdefault(r["stream_id"], []).append(r["version"])
        assert all(v == list(range(1, 61)) for v in per_stream.values())
        assert node.pool is not None
        assert (await verify_chain(node.pool)).ok
    finally:
        await admin.close()
        for s in sequencers:
            await s.stop()
        await node.stop()
