"""What may be asked of a webhook endpoint: the commands of the endpoint aggregate.

Every command carries `at`; the handler generates ids, reads the log's head and computes the
rotation overlap, so that `decide` never reads a clock, a random source or the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs

from helix.domain.webhook.events import DisabledReason


@attrs.frozen(kw_only=True)
class CreateEndpoint:
    endpoint_id: UUID
    owner: UUID
    url: str
    event_types: tuple[str, ...]
    description: str = ""
    enabled: bool = True
    after_position: int
    at: datetime


@attrs.frozen(kw_only=True)
class UpdateEndpoint:
    """Fields left as None are not changed."""

    url: str | None = None
    event_types: tuple[str, ...] | None = None
    description: str | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class DisableEndpoint:
    reason: DisabledReason = DisabledReason.BY_USER
    detail: str = ""
    at: datetime


@attrs.frozen(kw_only=True)
class EnableEndpoint:
    at: datetime


@attrs.frozen(kw_only=True)
class RotateSecret:
    previous_valid_until: datetime
    at: datetime


@attrs.frozen(kw_only=True)
class DeleteEndpoint:
    at: datetime


Command: TypeAlias = (
    CreateEndpoint
    | UpdateEndpoint
    | DisableEndpoint
    | EnableEndpoint
    | RotateSecret
    | DeleteEndpoint
)
