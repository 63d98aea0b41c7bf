"""Background tasks' shared ending: cancel, then wait until the task has really finished."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task given (None is skipped) and wait for each to finish.

    A task may end with an error instead of the cancellation: asyncpg, for one, can answer a
    cancel that lands mid-query on a connection being torn down with its own client error.
    Whatever a task being stopped raises is logged, never passed on to the one stopping it."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.warning("%s raised while it was being stopped", task.get_name(), exc_info=True)
