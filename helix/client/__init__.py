"""`helix.client`: the Python client of the Helix API, blocking (`Client`) or async
(`AsyncClient`), with the API's JSON views as TypedDicts (`helix.client.types`) and its error
envelope raised as exceptions (`helix.client.errors`)."""

from helix.client import types
from helix.client.asyncclient import TERMINAL_STATUSES, AsyncClient, WaitTimeout
from helix.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    HelixClientError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from helix.client.sync import Client

__all__ = [
    "TERMINAL_STATUSES",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "HelixClientError",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "WaitTimeout",
    "types",
]
