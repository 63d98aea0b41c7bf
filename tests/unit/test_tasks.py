"""Stopping background tasks: whatever a task raises as it is cancelled stays with it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from helix.tasks import cancel_and_wait


async def test_a_task_that_fails_as_it_is_cancelled_is_stopped_and_its_error_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()

    async def torn_down() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("another operation is in progress") from None

    failing = asyncio.create_task(torn_down(), name="failing")
    quiet = asyncio.create_task(asyncio.sleep(60), name="quiet")
    await started.wait()
    with caplog.at_level(logging.WARNING, logger="helix.tasks"):
        await cancel_and_wait([failing, None, quiet])

    assert failing.done() and quiet.cancelled()
    assert [r.getMessage() for r in caplog.records] == ["failing raised while it was being stopped"]
