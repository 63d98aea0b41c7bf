"""The client's one HTTP path: credentials, an `Idempotency-Key` on every POST, retries of the
requests that are safe to repeat, and error answers raised as `helix.client.errors`.

Credentials go only to `base_url`: the API never redirects, so a redirect is not followed, and
a list's `next` is a path on the same server.

A request is repeated (after a connection error, a timeout or a 503, with exponential backoff
and jitter, honouring `Retry-After`) only if repeating it cannot do its work twice: GET, PUT
and DELETE, and a POST, whose key makes the server answer a repeat with the stored response
of the first. PATCH is never repeated.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from helix import __version__
from helix.client.errors import ApiError, ConnectionFailed, Unavailable, api_error

REPEATABLE = frozenset({"GET", "HEAD", "PUT", "DELETE", "POST"})
MAX_RETRY_AFTER_S = 30.0
Params = Mapping[str, str | int | float | bool | None]


def query(params: Params | None) -> dict[str, str]:
    """Query values as the API reads them: booleans as true/false, None left out."""
    out: dict[str, str] = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


class Transport:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.25,
    ) -> None:
        if api_key is not None and token is not None:
            raise ValueError("give api_key or token, not both")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the server URL must be http(s)://…, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._random = random.Random()

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"helix-client/{__version__}", "Accept": "application/json"}
        credential = self.api_key if self.api_key is not None else self.token
        if credential is not None:
            # The server takes a key or a JWT as a bearer credential alike.
            headers["Authorization"] = f"Bearer {credential}"
        return headers

    def session(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop it is made in.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        top = self.backoff * 2**attempt
        return self._random.uniform(top / 2, top)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON answer (None for 204), or the `ApiError` of an error answer."""
        headers = self.headers()
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        attempts = self.retries + 1 if method in REPEATABLE else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                async with self.session().request(
                    method, self.base_url + path, params=query(params), data=data,
                    headers=headers, timeout=limit, allow_redirects=False,
                ) as resp:  # fmt: skip
                    raw = await resp.read()
                    if resp.status < 300:
                        return json.loads(raw) if raw and resp.status != 204 else None
                    error = api_error(resp.status, raw, resp.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if last:
                    raise ConnectionFailed(
                        f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}"
                    ) from exc
                await asyncio.sleep(self.delay(attempt))
                continue
            if not isinstance(error, Unavailable) or last:
                raise error
            await asyncio.sleep(self.delay(attempt, error.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def download(self, path: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """An open response of a file's bytes (status unchecked); a silent connection is a dead
        one, a long download is not."""
        headers = {**self.headers(), "Accept": "*/*"}
        limit = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
        try:
            async with self.session().get(
                self.base_url + path, headers=headers, timeout=limit, allow_redirects=False
            ) as resp:
                yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionFailed(
                f"GET {self.base_url}{path}: {type(exc).__name__}: {exc}"
            ) from exc

    @asynccontextmanager
    async def stream(
        self, path: str, params: Params | None, last_id: int | None, read_timeout: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """An open event-stream response (status unchecked), resuming after `last_id`."""
        headers = {**self.headers(), "Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        # No total: a stream lasts; a silent connection (no heartbeat) is a dead one.
        limit = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=read_timeout)
        async with self.session().get(
            self.base_url + path,
            params=query(params),
            headers=headers,
            timeout=limit,
            allow_redirects=False,
        ) as resp:
            yield resp


async def refused(resp: aiohttp.ClientResponse) -> ApiError:
    return api_error(resp.status, await resp.read(), resp.headers)
