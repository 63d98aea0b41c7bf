"""One HTTP attempt: the Standard Webhooks request, its outcome, nothing about the database.

Redirects are not followed (a 3xx is a failure like any non-2xx), connect and total timeouts
apply, and the connector refuses forbidden addresses after DNS resolution (see ssrf.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import attrs

from helix import __version__
from helix.config import Settings
from helix.webhooks.retry import parse_retry_after
from helix.webhooks.signatures import signature_header
from helix.webhooks.ssrf import AddressGuard, BlockedAddress

USER_AGENT = f"Helix-Webhooks/{__version__}"
RESPONSE_LIMIT = 20 * 1024
URL_CACHE = 4096


@attrs.frozen(kw_only=True)
class Outcome:
    status: int | None
    duration_ms: float
    error_class: str | None = None
    error: str | None = None
    body: str | None = None
    truncated: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def headers_for(
    message_id: str, body: bytes, secrets: Sequence[str], timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets, message_id, ts, body),
    }


async def _read_limited(response: aiohttp.ClientResponse) -> tuple[str, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= RESPONSE_LIMIT:
        chunk = await response.content.read(RESPONSE_LIMIT + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if response.content.at_eof():
            break
    raw = b"".join(chunks)
    return raw[:RESPONSE_LIMIT].decode("utf-8", errors="replace"), len(raw) > RESPONSE_LIMIT


def _blocked(exc: BaseException) -> BlockedAddress | None:
    """The guard's refusal behind a client error, if that is what it is."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, BlockedAddress):
            return cause
        cause = getattr(cause, "os_error", None) or cause.__cause__
    return None


def _error_class(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "tls_error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection_error"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid_url"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return "response_error"
    return "client_error"


class Sender:
    """One client session (and guarded connector) shared by a worker's attempts."""

    def __init__(self, settings: Settings, *, guard: AddressGuard | None = None) -> None:
        self.settings = settings
        self.guard = guard or AddressGuard(settings.webhook_allowed_networks)
        self._session: aiohttp.ClientSession | None = None
        # URL → why the guard refuses it ('' if it does not): the check reads only the URL and
        # the configured networks, so an endpoint's URL is checked once, not per delivery.
        self._checked: dict[str, str] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=self.guard.connector(limit=self.settings.webhook_concurrency * 2),
            timeout=aiohttp.ClientTimeout(
                total=self.settings.webhook_timeout,
                sock_connect=self.settings.webhook_connect_timeout,
            ),
            trust_env=False,  # no proxy from the environment: it would bypass the guard
            auto_decompress=True,
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _refusal(self, url: str) -> str:
        found = self._checked.get(url)
        if found is None:
            try:
                self.guard.check_url(url)
                found = ""
            except ValueError as exc:
                found = str(exc)
            if len(self._checked) >= URL_CACHE:
                self._checked.clear()
            self._checked[url] = found
        return found

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        assert self._session is not None, "Sender.start() first"
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        refused = self._refusal(url)
        if refused:
            return Outcome(status=None, duration_ms=0.0, error_class="blocked_address",
                           error=refused)  # fmt: skip
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                text, truncated = await _read_limited(response)
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            # A refusal is recorded in the guard's words (which address, which range).
            blocked = _blocked(exc)
            return Outcome(
                status=None, duration_ms=elapsed(),
                error_class="blocked_address" if blocked else _error_class(exc),
                error=(str(blocked) if blocked else f"{type(exc).__name__}: {exc}")[:2000],
            )  # fmt: skip
        ok = 200 <= status < 300
        return Outcome(
            status=status,
            duration_ms=elapsed(),
            error_class=None if ok else ("redirect" if 300 <= status < 400 else "http_status"),
            error=None if ok else f"HTTP {status}",
            body=text,
            truncated=truncated,
            retry_after=retry_after,
        )
