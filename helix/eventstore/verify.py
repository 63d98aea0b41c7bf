"""Walks the hash chain and the positions: proof that no event was altered, removed or moved."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import attrs

from helix.eventstore.chain import GENESIS, link
from helix.eventstore.sql import QUERIES


@attrs.frozen(kw_only=True)
class ChainReport:
    ok: bool
    verified_head: int
    head_hash: str
    first_bad_position: int | None = None
    reason: str | None = None


async def verify_chain(
    pool: asyncpg.Pool,
    *,
    page_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> ChainReport:
    """Checks every sequenced event from position 1 up to the recorded head."""
    recorded_head, recorded_hash = await pool.fetchrow(QUERIES["chain_head"])
    previous, position = GENESIS, 0

    def bad(at: int, reason: str) -> ChainReport:
        return ChainReport(
            ok=False,
            verified_head=position,
            head_hash=previous.hex(),
            first_bad_position=at,
            reason=reason,
        )

    while True:
        rows = await pool.fetch(QUERIES["chain_page"], position, page_size)
        if not rows:
            break
        for row in rows:
            expected = position + 1
            if row["position"] != expected:
                return bad(expected, f"position {expected} is missing (next is {row['position']})")
            digest = link(previous, expected, row)
            if digest != bytes(row["hash"]):
                return bad(expected, "stored hash does not match the event's contents")
            previous, position = digest, expected
        if progress is not None:
            progress(position, recorded_head)
    if position != recorded_head:
        return bad(position + 1, f"the log ends at {position} but its head is {recorded_head}")
    if position and previous != bytes(recorded_hash):
        return bad(position, "the head hash does not match the last event")
    return ChainReport(ok=True, verified_head=position, head_hash=previous.hex())
