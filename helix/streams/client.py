"""Following an event stream as a client: parsing SSE and resuming after a dropped connection.
Used by `helix events tail`, `helix bench stream` and the tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp

from helix.client.sse import Message, Parser

log = logging.getLogger(__name__)
__all__ = ["Message", "Parser", "StreamGone", "messages"]


class StreamGone(Exception):
    """The server refused the stream (a 4xx other than 429): retrying would not help."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


async def messages(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    last_id: str | None = None,
    reconnect: bool = True,
    max_backoff: float = 10.0,
) -> AsyncIterator[Message]:
    """Every message of the stream at `url`; after a dropped connection it reconnects with
    `Last-Event-ID` (with backoff) so nothing is missed or repeated. Ends when the server
    closes the stream cleanly after `done`, or with StreamGone on a 4xx answer."""
    backoff = 0.2
    while True:
        sent = dict(headers or {})
        if last_id is not None:
            sent["Last-Event-ID"] = last_id
        parser = Parser()
        try:
            async with session.get(url, headers=sent, params=params) as resp:
                if 400 <= resp.status < 500 and resp.status != 429:
                    raise StreamGone(resp.status, await resp.text())
                resp.raise_for_status()
                backoff = 0.2
                async for raw in resp.content:
                    message = parser.feed_line(raw.decode("utf-8").rstrip("\r\n"))
                    if message is None:
                        continue
                    if message.id is not None:
                        last_id = message.id
                    yield message
                    if message.event == "done":
                        return
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            if not reconnect:
                raise
            log.warning("stream dropped (%s); resuming after %s in %.1fs", exc, last_id, backoff)
        if not reconnect:
            return
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff)
