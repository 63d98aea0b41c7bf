"""The user aggregate: accounts, their roles, API keys and login history."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from helix.domain.user.commands import (
    ChangeRole,
    Command,
    CreateApiKey,
    CreateUser,
    DisableUser,
    EnableUser,
    ExpireApiKey,
    RecordLogin,
    RevokeApiKey,
    RevokeToken,
    RevokeTokens,
    SetPassword,
)
from helix.domain.user.decider import (
    INITIAL,
    MAX_KEY_NAME_CHARS,
    USERNAME_PATTERN,
    ApiKeyState,
    UserState,
    check_username,
    decide,
    evolve,
    fold,
)
from helix.domain.user.events import (
    EVENTS,
    ApiKeyCreated,
    ApiKeyExpired,
    ApiKeyRevoked,
    Event,
    LoginFailed,
    LoginSucceeded,
    Role,
    TokenRevoked,
    TokensRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    UserRoleChanged,
)

STREAM_TYPE = "user"


def stream_id(user_id: UUID) -> str:
    return f"{STREAM_TYPE}-{user_id}"


def failures_stream_id(day: date) -> str:
    """Where failed logins for unknown usernames go: one stream per UTC day."""
    return f"auth-failures-{day.isoformat()}"


__all__ = [
    "EVENTS",
    "INITIAL",
    "MAX_KEY_NAME_CHARS",
    "STREAM_TYPE",
    "USERNAME_PATTERN",
    "ApiKeyCreated",
    "ApiKeyExpired",
    "ApiKeyRevoked",
    "ApiKeyState",
    "ChangeRole",
    "Command",
    "CreateApiKey",
    "CreateUser",
    "DisableUser",
    "EnableUser",
    "Event",
    "ExpireApiKey",
    "LoginFailed",
    "LoginSucceeded",
    "RecordLogin",
    "RevokeApiKey",
    "RevokeToken",
    "RevokeTokens",
    "Role",
    "SetPassword",
    "TokenRevoked",
    "TokensRevoked",
    "UserCreated",
    "UserDisabled",
    "UserEnabled",
    "UserPasswordChanged",
    "UserRoleChanged",
    "UserState",
    "check_username",
    "decide",
    "evolve",
    "failures_stream_id",
    "fold",
    "stream_id",
]
