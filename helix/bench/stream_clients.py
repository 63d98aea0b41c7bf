"""SSE clients in a process of their own, for `helix bench stream`: the server's process then
does only the server's work. Prints `ready` once every client has caught up, then (after
`events` ticks each, or the deadline) one JSON line: the append-to-receipt latencies in ms.

Each client is a bare asyncio protocol that finds each tick's timestamp in the bytes as they
arrive (no HTTP library, no JSON parse, no task per client), so that one process can follow a
thousand streams without becoming the bottleneck it is meant to measure. Latency is measured on
CLOCK_MONOTONIC, which every process of the machine shares.

    python -m helix.bench.stream_clients URL KEY CLIENTS EVENTS DEADLINE_S
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

TICK = b'"data":{"t":'
CAUGHT_UP = b"event: caught_up"
NUMBER = frozenset(b"0123456789.e+-")
TAIL = max(len(TICK), len(CAUGHT_UP))


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Follower(asyncio.Protocol):
    def __init__(self, request: bytes, events: int, latencies: list[float]) -> None:
        self.request = request
        self.events = events
        self.latencies = latencies
        self.received = 0
        self.buffer = b""
        self.caught_up = asyncio.Event()
        self.finished = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        arrived = now()
        buffer = self.buffer + data
        if not self.caught_up.is_set():
            if buffer.startswith(b"HTTP/1.1 ") and not buffer.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the stream was refused: {buffer[:100]!r}")
            if CAUGHT_UP in buffer:
                self.caught_up.set()
        start = 0
        while (found := buffer.find(TICK, start)) >= 0:
            end = found + len(TICK)
            while end < len(buffer) and buffer[end] in NUMBER:
                end += 1
            if end == len(buffer):  # the number goes on in the next read
                start = found
                break
            self.latencies.append((arrived - float(buffer[found + len(TICK) : end])) * 1000)
            self.received += 1
            start = end
        else:  # keep enough of the tail for a marker split across reads
            start = max(start, len(buffer) - TAIL)
        self.buffer = buffer[start:]
        if self.received >= self.events:
            self.finished.set()
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.finished.set()


async def main(url: str, key: str, clients: int, events: int, deadline: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = f"{parts.path}?{parts.query}" if parts.query else parts.path
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    followers: list[Follower] = []
    for _ in range(clients):
        follower = Follower(request, events, latencies)
        await loop.create_connection(lambda f=follower: f, host, port)  # type: ignore[misc]
        followers.append(follower)
    async with asyncio.timeout(120):
        await asyncio.gather(*(f.caught_up.wait() for f in followers))
    print("ready", flush=True)
    waits = [asyncio.create_task(f.finished.wait()) for f in followers]
    _, pending = await asyncio.wait(waits, timeout=deadline)
    for task in pending:
        task.cancel()
    for follower in followers:
        if follower.transport is not None:
            follower.transport.close()
    unfinished = sum(1 for f in followers if f.received < events)
    print(json.dumps({"latencies_ms": latencies, "unfinished": unfinished}), flush=True)


if __name__ == "__main__":
    url, key, clients, events, deadline = sys.argv[1:6]
    asyncio.run(main(url, key, int(clients), int(events), float(deadline)))
