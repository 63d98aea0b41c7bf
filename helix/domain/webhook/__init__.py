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
# An endpoint's limits; the API's request schemas publish them.
MAX_URL_CHARS = 2_048
MAX_DESCRIPTION_CHARS = 2_000
MAX_SECRET_CHARS = 200


def stream_id(endpoint_id: UUID) -> str:
    return f"{STREAM_TYPE}-{endpoint_id}"


__all__ = [
    "EVENTS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_SECRET_CHARS",
    "MAX_URL_CHARS",
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
