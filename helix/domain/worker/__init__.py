"""The worker aggregate: processes that claim jobs and run their phases."""

from __future__ import annotations

from uuid import UUID

from helix.domain.worker.commands import (
    Command,
    MarkOffline,
    MarkOnline,
    PruneWorker,
    RegisterWorker,
)
from helix.domain.worker.decider import (
    INITIAL,
    MAX_HOSTNAME_CHARS,
    MAX_WORKER_NAME_CHARS,
    WorkerState,
    decide,
    evolve,
    fold,
    normalise_capabilities,
)
from helix.domain.worker.events import (
    EVENTS,
    Event,
    WorkerCameOnline,
    WorkerPruned,
    WorkerRegistered,
    WorkerWentOffline,
)

STREAM_TYPE = "worker"


def stream_id(worker_id: UUID) -> str:
    return f"{STREAM_TYPE}-{worker_id}"


__all__ = [
    "EVENTS",
    "INITIAL",
    "MAX_HOSTNAME_CHARS",
    "MAX_WORKER_NAME_CHARS",
    "STREAM_TYPE",
    "Command",
    "Event",
    "MarkOffline",
    "MarkOnline",
    "PruneWorker",
    "RegisterWorker",
    "WorkerCameOnline",
    "WorkerPruned",
    "WorkerRegistered",
    "WorkerState",
    "WorkerWentOffline",
    "decide",
    "evolve",
    "fold",
    "normalise_capabilities",
    "stream_id",
]
