"""SSE clients in a process of their own, for `helix bench stream`: the server's process then
does only the server's work. Prints `ready` once every client has caught up, then (after
`events` ticks each, or the deadline) one JSON line: the append-to-receipt latencies in ms.

The clients are plain non-blocking sockets on one epoll loop, with no event loop library, no
HTTP library and no JSON parse: each read is stamped, scanned for tick timestamps and dropped,
so that one process can follow a thousand streams without becoming the bottleneck it is meant
to measure. Latency is measured on CLOCK_MONOTONIC, which every process of the machine shares.

    python -m helix.bench.stream_clients URL KEY CLIENTS EVENTS DEADLINE_S

With `replay` first, one client reads a stream from its start up to the caught-up marker and
prints how many events it received and how long that took:

    python -m helix.bench.stream_clients replay URL KEY
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from urllib.parse import urlsplit

OK = b"HTTP/1.1 200"
TICK = b'{"t":'  # a tick's payload, however its JSON is spaced (`{"t": 1.5}` as jsonb prints it)
CAUGHT_UP = b"event: caught_up"
NUMBER = frozenset(b"0123456789.e+-")
SPACE = ord(" ")
TAIL = max(len(TICK), len(CAUGHT_UP))


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Follower:
    """One stream's bytes as they arrive: finds the caught-up marker and each tick's timestamp,
    keeping only enough of the tail for a marker split across reads."""

    __slots__ = ("accepted", "buffer", "caught_up", "latencies", "received", "sock")

    def __init__(self, sock: socket.socket | None, latencies: list[float]) -> None:
        self.sock = sock
        self.latencies = latencies
        self.received = 0
        self.accepted = False  # the response's status line said 200
        self.caught_up = False
        self.buffer = b""

    def feed(self, data: bytes, arrived: float) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.accepted:
            if len(buffer) < len(OK):  # the status line goes on in the next read
                self.buffer = buffer
                return
            if not buffer.startswith(OK):
                raise RuntimeError(f"the stream was refused: {buffer[:100]!r}")
            self.accepted = True
        if not self.caught_up and CAUGHT_UP in buffer:
            self.caught_up = True
        start = 0
        while (found := buffer.find(TICK, start)) >= 0:
            begin = found + len(TICK)
            while begin < len(buffer) and buffer[begin] == SPACE:
                begin += 1
            end = begin
            while end < len(buffer) and buffer[end] in NUMBER:
                end += 1
            if end == len(buffer):  # the number goes on in the next read
                start = found
                break
            self.latencies.append((arrived - float(buffer[begin:end])) * 1000)
            self.received += 1
            start = end
        else:
            start = max(start, len(buffer) - TAIL)
        self.buffer = buffer[start:]


def pump(
    poller: select.epoll,
    followers: dict[int, Follower],
    deadline: float,
    ready: bool,
    events: int,
) -> None:
    """Read until every open follower has caught up (`ready`) or, past that, received `events`
    ticks; a follower that is done, or that the server closed, leaves the loop."""

    def waiting() -> bool:
        if ready:
            return any(not f.caught_up for f in followers.values())
        return bool(followers)

    while waiting():
        remaining = deadline - now()
        if remaining <= 0:
            return
        for fd, _ in poller.poll(min(remaining, 1.0)):
            follower = followers.get(fd)
            if follower is None or follower.sock is None:
                continue
            try:
                data = follower.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            if data:
                follower.feed(data, now())
            if not data or (not ready and follower.received >= events):
                poller.unregister(fd)
                follower.sock.close()
                follower.sock = None
                del followers[fd]


def stream_request(url: str, key: str) -> tuple[str, int, bytes]:
    """(host, port, the GET request's bytes) for an event stream."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = f"{parts.path}?{parts.query}" if parts.query else parts.path
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    return host, port, request


class Counter:
    """Counts the messages of a replay (each starts with an `id:` line) up to the caught-up
    marker, however the bytes are split across reads."""

    MESSAGE = b"\nid: "

    def __init__(self) -> None:
        self.received = 0
        self.caught_up = False
        self._tail = b""  # the end of the bytes read so far, for a marker split across reads

    def feed(self, data: bytes) -> None:
        buffer = self._tail + data
        end = buffer.find(CAUGHT_UP)
        self.caught_up = end >= 0
        if end < 0:
            end = len(buffer)
        # A message wholly inside the kept tail was counted with the previous read.
        counted = buffer.count(self.MESSAGE, 0, min(len(self._tail), end))
        self.received += buffer.count(self.MESSAGE, 0, end) - counted
        self._tail = buffer[-(len(CAUGHT_UP) - 1) :]


def replay(url: str, key: str) -> None:
    host, port, request = stream_request(url, key)
    counter = Counter()
    with socket.create_connection((host, port)) as sock:
        started = now()
        sock.sendall(request)
        first = sock.recv(1 << 16)
        if not first.startswith(OK):
            raise RuntimeError(f"the stream was refused: {first[:100]!r}")
        counter.feed(first)
        while not counter.caught_up and (data := sock.recv(1 << 20)):
            counter.feed(data)
        seconds = now() - started
    print(json.dumps({"received": counter.received, "seconds": seconds}), flush=True)


def main(url: str, key: str, clients: int, events: int, deadline: float) -> None:
    host, port, request = stream_request(url, key)
    latencies: list[float] = []
    followers: dict[int, Follower] = {}
    everyone: list[Follower] = []
    with select.epoll() as poller:
        for _ in range(clients):
            sock = socket.create_connection((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            sock.setblocking(False)
            follower = Follower(sock, latencies)
            followers[sock.fileno()] = follower
            everyone.append(follower)
            poller.register(sock.fileno(), select.EPOLLIN)
        pump(poller, followers, now() + 120, True, events)
        if any(not f.caught_up for f in everyone):
            raise RuntimeError("not every client caught up within 120 s")
        print("ready", flush=True)
        pump(poller, followers, now() + deadline, False, events)
        for follower in followers.values():
            if follower.sock is not None:
                follower.sock.close()
    unfinished = sum(1 for f in everyone if f.received < events)
    print(json.dumps({"latencies_ms": latencies, "unfinished": unfinished}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "replay":
        replay(*sys.argv[2:4])
    else:
        url, key, clients, events, deadline = sys.argv[1:6]
        main(url, key, int(clients), int(events), float(deadline))
