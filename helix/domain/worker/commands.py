"""What may be asked of a worker: the commands of the worker aggregate.

Every command carries `at`, the time it happens, and the ids the handler generated, so that
`decide` is deterministic. Heartbeats are not commands: they change no state the log keeps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import attrs


@attrs.frozen(kw_only=True)
class RegisterWorker:
    worker_id: UUID
    user_id: UUID
    name: str
    hostname: str
    capabilities: tuple[str, ...]
    resources: dict[str, Any] = attrs.field(factory=dict)
    at: datetime


@attrs.frozen(kw_only=True)
class MarkOffline:
    """The worker missed its heartbeats; the last one came at `last_heartbeat_at`."""

    last_heartbeat_at: datetime
    at: datetime


@attrs.frozen(kw_only=True)
class MarkOnline:
    """A worker that was offline showed it is alive again (a heartbeat or a claim)."""

    at: datetime


@attrs.frozen(kw_only=True)
class PruneWorker:
    """Forget a worker offline for long enough: it leaves the registry (its history stays)."""

    at: datetime


Command: TypeAlias = RegisterWorker | MarkOffline | MarkOnline | PruneWorker
