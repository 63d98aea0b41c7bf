"""The supervisor: runs each background role's loop, and restarts it whatever it raises.

One rule in one place: a role's `run()` is a plain loop with no retry logic of its own. Any
exception it raises (a dropped connection is `asyncpg.InterfaceError` or `OSError`, not only a
`PostgresError`) is logged with the role's name, and the loop starts again after a capped
exponential backoff with jitter, so that nodes restarting together do not retry in step. A
`run()` that returns has finished on purpose (its role is stopping) and is not restarted.

Each role's state is kept for the probes: `running`, `restarting` (since when, after which
error) or `stopped`. A role is *failing* from its first error until a run of it has lasted
`settle` seconds; `/readyz` turns not ready while a role has been failing longer than
`failing_after`, and names it. The first error of a streak is logged with its traceback, the
next ones in a line each.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import attrs

from helix.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STATES = ("running", "restarting", "stopped")


@attrs.define(kw_only=True)
class RoleState:
    name: str
    state: str = "running"
    since: datetime = attrs.field(factory=lambda: datetime.now(UTC))  # of the state
    error: str | None = None  # the last error (kept once running again; none once stopped)
    restarts: int = 0
    failing_since: datetime | None = None  # first error of the current streak
    _run_started: float = 0.0  # loop time of the current run's start

    def report(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since.isoformat(),
            "error": self.error,
            "restarts": self.restarts,
            "failing_since": None if self.failing_since is None else self.failing_since.isoformat(),
        }


class Supervisor:
    """The process's supervised role loops, by name."""

    def __init__(
        self,
        *,
        initial_backoff: float = 0.1,
        max_backoff: float = 10.0,
        settle: float = 10.0,
        failing_after: float = 30.0,
    ) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.settle = settle
        self.failing_after = failing_after
        self.roles: dict[str, RoleState] = {}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run `run()` under supervision as the role `name`; the task is the role's to cancel
        when it stops (see `stop`)."""
        role = RoleState(name=name)
        self.roles[name] = role
        return asyncio.create_task(self._supervise(role, run), name=f"helix-{name}")

    async def stop(self, tasks: Iterable[asyncio.Task[None] | None]) -> None:
        """Stop the supervised tasks given: cancel each and wait until it has finished."""
        await cancel_and_wait(tasks)

    def failing(self) -> list[RoleState]:
        """The roles that have been failing for longer than `failing_after`."""
        now = datetime.now(UTC)
        self._settle_all()
        return [
            role
            for role in self.roles.values()
            if role.failing_since is not None
            and (now - role.failing_since).total_seconds() > self.failing_after
        ]

    def report(self) -> dict[str, Any]:
        """Every role's state, and whether none has been failing too long: for `/readyz`."""
        failing = {role.name for role in self.failing()}
        return {
            "ok": not failing,
            "failing": sorted(failing),
            "roles": {name: role.report() for name, role in sorted(self.roles.items())},
        }

    def _settle_all(self) -> None:
        now = asyncio.get_running_loop().time()
        for role in self.roles.values():
            if role.state == "running" and now - role._run_started >= self.settle:
                role.failing_since = None

    def _enter(self, role: RoleState, state: str, error: str | None = None) -> None:
        role.state = state
        role.since = datetime.now(UTC)
        role.error = error

    async def _supervise(self, role: RoleState, run: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        delay = self.initial_backoff
        try:
            while True:
                role._run_started = loop.time()
                try:
                    await run()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"[:500]
                    if loop.time() - role._run_started >= self.settle:
                        delay = self.initial_backoff  # it had recovered: a new streak
                        role.failing_since = None
                    wait = delay * random.uniform(0.5, 1.0)
                    if role.failing_since is None:
                        role.failing_since = datetime.now(UTC)
                        log.exception("role %s failed; restarting in %.2f s", role.name, wait)
                    else:  # the traceback once per streak, not at every retry
                        log.error(
                            "role %s failed again (%s; failing since %s); restarting in %.2f s",
                            role.name, error, role.failing_since.isoformat(), wait,
                        )  # fmt: skip
                    self._enter(role, "restarting", error)
                    role.restarts += 1
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.max_backoff)
                self._enter(role, "running", role.error)
        finally:
            self._enter(role, "stopped")


__all__ = ["STATES", "RoleState", "Supervisor"]
