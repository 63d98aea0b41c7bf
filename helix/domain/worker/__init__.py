"""The worker aggregate: processes that claim jobs and run their phases."""

from __future__ import annotations

from uuid import UUID

from helix.domain.worker.events import (
    EVENTS,
    Event,
    WorkerCameOnline,
    WorkerRegistered,
    WorkerWentOffline,
)

STREAM_TYPE = "worker"


def stream_id(worker_id: UUID) -> str:
    return f"{STREAM_TYPE}-{worker_id}"


__all__ = [
    "EVENTS",
    "STREAM_TYPE",
    "Event",
    "WorkerCameOnline",
    "WorkerRegistered",
    "WorkerWentOffline",
    "stream_id",
]
