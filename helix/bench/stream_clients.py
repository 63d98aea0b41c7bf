"""SSE clients in a process of their own, for `helix bench stream`: the server's process then
does only the server's work. Prints `ready` once every client has caught up, then (after
`events` ticks each, or the deadline) one JSON line: the append-to-receipt latencies in ms.

Latency is measured on CLOCK_MONOTONIC, which every process of the machine shares.

    python -m helix.bench.stream_clients URL KEY CLIENTS EVENTS DEADLINE_S
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

TICK = b'"data":{"t":'
NUMBER = frozenset(bytes([c]) for c in b"0123456789.e+-")


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


async def follow(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    events: int,
    latencies: list[float],
    caught_up: asyncio.Event,
) -> None:
    """Reads the stream in chunks and pulls each tick's timestamp out of its message without
    a full JSON parse, so a thousand clients in one process keep up with the server."""
    received = 0
    pending = b""
    async with session.get(url, headers=headers) as resp:
        resp.raise_for_status()
        async for chunk in resp.content.iter_any():
            arrived = now()
            pending += chunk
            *messages, pending = pending.split(b"\n\n")
            for message in messages:
                if b"event: caught_up" in message:
                    caught_up.set()
                    continue
                start = message.find(TICK)
                if start < 0:
                    continue
                start += len(TICK)
                end = start
                while message[end : end + 1] in NUMBER:
                    end += 1
                latencies.append((arrived - float(message[start:end])) * 1000)
                received += 1
                if received >= events:
                    return


async def main(url: str, key: str, clients: int, events: int, deadline: float) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        ready = [asyncio.Event() for _ in range(clients)]
        tasks = [
            asyncio.create_task(follow(session, url, headers, events, latencies, flag))
            for flag in ready
        ]
        async with asyncio.timeout(120):
            await asyncio.gather(*(flag.wait() for flag in ready))
        print("ready", flush=True)
        _, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    print(json.dumps({"latencies_ms": latencies, "unfinished": len(pending)}), flush=True)


if __name__ == "__main__":
    url, key, clients, events, deadline = sys.argv[1:6]
    asyncio.run(main(url, key, int(clients), int(events), float(deadline)))
