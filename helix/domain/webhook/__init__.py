"""The webhook endpoint aggregate's events (the endpoint table holds its current state)."""

from __future__ import annotations

from uuid import UUID

from helix.domain.webhook.events import (
    EVENTS,
    DisabledReason,
    Event,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)

STREAM_TYPE = "webhook"


def stream_id(endpoint_id: UUID) -> str:
    return f"{STREAM_TYPE}-{endpoint_id}"


__all__ = [
    "EVENTS",
    "STREAM_TYPE",
    "DisabledReason",
    "Event",
    "WebhookCreated",
    "WebhookDeleted",
    "WebhookDisabled",
    "WebhookEnabled",
    "WebhookSecretRotated",
    "WebhookUpdated",
    "stream_id",
]
