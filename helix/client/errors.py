"""What the client raises: an `ApiError` for every answer that is an error envelope, with one
subclass per status a caller acts on differently, and `ConnectionFailed` when no answer came.

    try:
        client.get_project(project_id)
    except NotFound:
        ...
    except RateLimited as exc:
        time.sleep(exc.retry_after or 1)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class HelixClientError(Exception):
    """Base of everything `helix.client` raises on purpose."""


class ConnectionFailed(HelixClientError):
    """No answer: the server could not be reached, or the connection dropped (after the
    retries the request allows)."""


class ApiError(HelixClientError):
    """The server refused the request: the error envelope's `code`, `message` and `details`,
    the HTTP `status` and the `request_id` to quote when reporting it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.request_id = request_id
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked the caller to wait (`Retry-After`), if it said."""
        raw = self.headers.get("Retry-After")
        try:
            return max(0.0, float(raw)) if raw is not None else None
        except ValueError:
            return None


class BadRequest(ApiError):
    """400: the request could not be read (malformed JSON, a bad header)."""


class Unauthorized(ApiError):
    """401: no credential, or one that is unknown, expired or revoked."""


class Forbidden(ApiError):
    """403: the credential may not do this."""


class NotFound(ApiError):
    """404: no such resource, or one the caller may not see."""


class Conflict(ApiError):
    """409: the resource's state does not allow this (the current state is in `details`), or
    an `Idempotency-Key` was reused with another body."""


class ValidationFailed(ApiError):
    """422: the request's body or query is not valid (`details` says which field)."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says when to come back."""


class Unavailable(ApiError):
    """503: the server cannot serve now (its database is away); worth retrying later."""


class ServerError(ApiError):
    """Any other 5xx: the server failed."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def api_error(
    status: int, body: bytes, headers: Mapping[str, str], request_id: str | None = None
) -> ApiError:
    """The exception for an error answer: its envelope if it has one (a proxy's HTML page has
    none, and becomes `HTTP_<status>` with the start of its text)."""
    error: Any = None
    found_id = request_id or headers.get("X-Request-ID")
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        error = decoded.get("error")
        if isinstance(decoded.get("request_id"), str):
            found_id = decoded["request_id"]
    return envelope_error(status, error, headers, found_id, body)


def envelope_error(
    status: int,
    error: Any,
    headers: Mapping[str, str],
    request_id: str | None,
    body: bytes = b"",
) -> ApiError:
    """The exception for an envelope's `error` object (as in an answer or a stream's final
    `error` event)."""
    kind = BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        details = error.get("details")
        return kind(
            status,
            error["code"],
            str(error.get("message", "")),
            details if isinstance(details, dict) else {},
            request_id,
            headers,
        )
    text = body.decode("utf-8", "replace").strip()[:200] or "no error envelope in the answer"
    return kind(status, f"HTTP_{status}", text, {}, request_id, headers)


# A stream's final `error` event carries only the envelope: its status, from the code.
STATUS_BY_CODE = {
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "VALIDATION_ERROR": 422,
    "RATE_LIMIT_EXCEEDED": 429,
    "SERVICE_UNAVAILABLE": 503,
}
