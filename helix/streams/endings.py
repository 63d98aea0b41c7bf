"""When a job stream ends: after the job's terminal event (unless the client follows on)."""

from __future__ import annotations

import uuid

import asyncpg

from helix.domain.job import TERMINAL_EVENT_TYPES
from helix.streams.frames import Frame
from helix.streams.sql import QUERIES

TERMINAL_TYPES = sorted(TERMINAL_EVENT_TYPES)


class JobEnd:
    def __init__(self, pool: asyncpg.Pool, job_id: uuid.UUID) -> None:
        self._pool = pool
        self.job_id = job_id
        self.stream_id = f"job-{job_id}"

    def is_end(self, frame: Frame) -> bool:
        return frame.stream_id == self.stream_id and frame.type in TERMINAL_EVENT_TYPES

    async def ended_by(self, position: int) -> int | None:
        """The terminal event's position if the job ended at or before `position` (a client
        that resumed after it is caught up at once and must still be told it is done)."""
        found = await self._pool.fetchval(
            QUERIES["terminal_position"], self.stream_id, TERMINAL_TYPES
        )
        return int(found) if found is not None and found <= position else None

    def done(self, position: int) -> dict[str, object]:
        return {"job_id": str(self.job_id), "position": position}
