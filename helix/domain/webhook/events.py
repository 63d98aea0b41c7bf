"""What happened to a webhook endpoint (stream `webhook-<uuid>`).

The signing secret never appears here: events are shown to auditors and replayed to
subscribers for ever, so secrets live only in their credential table (`webhook_secrets`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs


class DisabledReason(enum.StrEnum):
    BY_USER = "by_user"
    GONE = "gone"  # the receiver answered 410 Gone
    FAILING = "failing"  # no success for the configured period


@attrs.frozen(kw_only=True)
class WebhookCreated:
    endpoint_id: UUID
    owner: UUID
    url: str
    event_types: tuple[str, ...]
    description: str
    enabled: bool
    # The endpoint receives the events sequenced after this log position (the head when it
    # was created). None in events recorded before it was kept here: the projection then
    # uses the created event's own position.
    after_position: int | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class WebhookUpdated:
    """Only the fields that changed are set; None means unchanged."""

    endpoint_id: UUID
    url: str | None = None
    event_types: tuple[str, ...] | None = None
    description: str | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class WebhookDisabled:
    endpoint_id: UUID
    reason: DisabledReason
    detail: str = ""
    at: datetime


@attrs.frozen(kw_only=True)
class WebhookEnabled:
    endpoint_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class WebhookDeleted:
    endpoint_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class WebhookSecretRotated:
    endpoint_id: UUID
    # Until then deliveries carry a signature with the previous secret as well.
    previous_valid_until: datetime
    at: datetime


Event: TypeAlias = (
    WebhookCreated
    | WebhookUpdated
    | WebhookDisabled
    | WebhookEnabled
    | WebhookDeleted
    | WebhookSecretRotated
)

EVENTS: dict[str, type] = {
    "webhook.created": WebhookCreated,
    "webhook.updated": WebhookUpdated,
    "webhook.disabled": WebhookDisabled,
    "webhook.enabled": WebhookEnabled,
    "webhook.deleted": WebhookDeleted,
    "webhook.secret_rotated": WebhookSecretRotated,
}
