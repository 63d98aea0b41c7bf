"""A sequencer in a process of its own, as a deployment with `--role` runs it; the benchmarks
start one so that the process they measure is only the client."""

from __future__ import annotations

import asyncio
import signal
import sys

from helix.config import Settings
from helix.database import connect
from helix.eventstore import Sequencer


async def main(url: str) -> None:
    settings = Settings.from_env()

    async def open_connection():  # type: ignore[no-untyped-def]
        return await connect(url, settings, application_name="helix-sequencer")

    sequencer = Sequencer(
        open_connection,
        batch_size=settings.sequencer_batch_size,
        poll_interval=settings.sequencer_poll_interval,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sequencer.start()
    print("ready", flush=True)
    await stop.wait()
    await sequencer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
