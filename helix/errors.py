"""The project's exceptions, each with the error code the API reports for it."""

from __future__ import annotations

from typing import Any, ClassVar


class HelixError(Exception):
    """Base of every error Helix raises on purpose."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


def error_body(
    code: str, message: str, details: dict[str, Any] | None, request_id: str
) -> dict[str, Any]:
    """The one error envelope, in every answer and in a stream's final `error` event."""
    return {
        "error": {"code": code, "message": message, "details": details or {}},
        "request_id": request_id,
    }


class ValidationError(HelixError):
    code = "VALIDATION_ERROR"
    status = 422


class BadRequest(HelixError):
    code = "VALIDATION_ERROR"
    status = 400


class PayloadTooLarge(HelixError):
    """A body, or a file to be stored, over a configured size limit."""

    code = "VALIDATION_ERROR"
    status = 413


class Unauthorized(HelixError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(HelixError):
    code = "FORBIDDEN"
    status = 403


class NotFound(HelixError):
    code = "NOT_FOUND"
    status = 404


class Conflict(HelixError):
    code = "CONFLICT"
    status = 409


class InvalidTransition(Conflict):
    """A command that the aggregate's current state does not allow."""

    def __init__(self, message: str, *, current: Any, **details: Any) -> None:
        super().__init__(message, current_state=current, **details)
        self.current = current


class ConcurrencyError(Conflict):
    """An append whose expected stream version was not the stream's actual version."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, expected {expected}",
            stream_id=stream_id,
            expected_version=expected,
            actual_version=actual,
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class RateLimited(HelixError):
    code = "RATE_LIMIT_EXCEEDED"
    status = 429


class Unavailable(HelixError):
    code = "SERVICE_UNAVAILABLE"
    status = 503
