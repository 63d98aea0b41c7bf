"""The supervisor's rules, without a database: any exception restarts a role, a return ends it,
a cancel stops it, and a role is failing from its first error until a run of it settles."""

from __future__ import annotations

import asyncio

from helix.supervisor import Supervisor


def fast(**changes: float) -> Supervisor:
    options = {"initial_backoff": 0.001, "max_backoff": 0.004, "settle": 60.0}
    options.update(changes)
    return Supervisor(**options)


async def test_any_exception_restarts_the_role_and_a_return_ends_it() -> None:
    supervisor = fast()
    runs = 0

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise KeyError("not a database error")
        if runs == 2:
            raise ConnectionResetError("dropped")

    await supervisor.start("flaky", run)
    role = supervisor.roles["flaky"]
    assert (runs, role.restarts, role.state) == (3, 2, "stopped")
    assert role.error is None  # stopped, no longer restarting after an error


async def test_a_role_that_keeps_failing_is_reported_with_its_last_error_then_stops() -> None:
    supervisor = fast(failing_after=0.0)
    failed = asyncio.Event()

    async def run() -> None:
        failed.set()
        raise RuntimeError("boom")

    task = supervisor.start("broken", run)
    await failed.wait()
    await asyncio.sleep(0.01)
    report = supervisor.report()
    assert report["ok"] is False and report["failing"] == ["broken"]
    role = report["roles"]["broken"]
    assert role["error"] == "RuntimeError: boom" and role["failing_since"] is not None
    await supervisor.stop([task])
    assert supervisor.roles["broken"].state == "stopped"


async def test_a_role_that_runs_long_enough_after_failing_is_no_longer_failing() -> None:
    supervisor = fast(settle=0.0, failing_after=0.0)
    runs = 0
    steady = asyncio.Event()

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("once")
        steady.set()
        await asyncio.Event().wait()  # runs until stopped

    task = supervisor.start("recovers", run)
    await steady.wait()
    report = supervisor.report()
    assert report["ok"] is True
    assert report["roles"]["recovers"]["state"] == "running"
    assert report["roles"]["recovers"]["restarts"] == 1
    await supervisor.stop([task])
