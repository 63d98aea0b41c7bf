"""The user aggregate: accounts, their roles, API keys and login history."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from helix.domain.user.events import (
    EVENTS,
    ApiKeyCreated,
    ApiKeyRevoked,
    Event,
    LoginFailed,
    LoginSucceeded,
    Role,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    UserRoleChanged,
)

STREAM_TYPE = "user"
# A username: 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.
USERNAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
MAX_KEY_NAME_CHARS = 200


def stream_id(user_id: UUID) -> str:
    return f"{STREAM_TYPE}-{user_id}"


def failures_stream_id(day: date) -> str:
    """Where failed logins for unknown usernames go: one stream per UTC day."""
    return f"auth-failures-{day.isoformat()}"


__all__ = [
    "EVENTS",
    "MAX_KEY_NAME_CHARS",
    "STREAM_TYPE",
    "USERNAME_PATTERN",
    "ApiKeyCreated",
    "ApiKeyRevoked",
    "Event",
    "LoginFailed",
    "LoginSucceeded",
    "Role",
    "UserCreated",
    "UserDisabled",
    "UserEnabled",
    "UserPasswordChanged",
    "UserRoleChanged",
    "failures_stream_id",
    "stream_id",
]
