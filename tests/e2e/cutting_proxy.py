"""A TCP proxy in front of a server that cuts connections: each connection's answer is passed
on up to a byte budget (by the connection's number), then both sides are closed, as a network
that drops connections mid-answer does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class CuttingProxy:
    def __init__(self, upstream_port: int, budget: Callable[[int], int | None]) -> None:
        self.upstream_port = upstream_port
        self.budget = budget  # None: pass everything
        self.connections = 0
        self.cut = 0
        self._server: asyncio.Server | None = None
        self.port = 0
        self._open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        budget = self.budget(self.connections)
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._open.update((writer, up_writer))
        forward = asyncio.create_task(_pipe(reader, up_writer))
        sent = 0
        try:
            while chunk := await up_reader.read(65536):
                if budget is not None and sent + len(chunk) >= budget:
                    writer.write(chunk[: budget - sent])
                    await writer.drain()
                    self.cut += 1
                    break
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except ConnectionError:
            pass
        finally:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forward
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
