"""What happened to a worker (stream `worker-<uuid>`).

Heartbeats are not events: a worker sends one every few seconds for as long as it lives, and
the log would fill with them. Only the changes people and tools care about are recorded:
a worker registered, went offline (missed its heartbeats), came back, was pruned (offline
for long enough that the registry forgets it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import attrs


@attrs.frozen(kw_only=True)
class WorkerRegistered:
    worker_id: UUID
    user_id: UUID
    name: str
    hostname: str
    capabilities: tuple[str, ...]
    resources: dict[str, Any] = attrs.field(factory=dict)
    at: datetime


@attrs.frozen(kw_only=True)
class WorkerWentOffline:
    worker_id: UUID
    last_heartbeat_at: datetime
    at: datetime


@attrs.frozen(kw_only=True)
class WorkerCameOnline:
    worker_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class WorkerPruned:
    worker_id: UUID
    at: datetime


Event: TypeAlias = WorkerRegistered | WorkerWentOffline | WorkerCameOnline | WorkerPruned

EVENTS: dict[str, type] = {
    "worker.registered": WorkerRegistered,
    "worker.offline": WorkerWentOffline,
    "worker.online": WorkerCameOnline,
    "worker.pruned": WorkerPruned,
}
