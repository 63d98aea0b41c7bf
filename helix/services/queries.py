"""The read side behind the API: read models in, JSON-ready dicts out, visibility enforced.

Another user's project or job is reported as not found; admins and auditors see everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg

from helix import envelope
from helix.config import Settings
from helix.domain import job as job_domain
from helix.domain.job import TERMINAL, JobPriority, Resources, Waiting
from helix.errors import NotFound
from helix.eventstore import EventStore
from helix.services.caller import Caller
from helix.services.views import (
    current_phase,
    job_view,
    line_view,
    message_view,
    phase_resources,
    phase_view,
    project_view,
    resources_view,
)
from helix.tasks import cancel_and_wait
from projections import jobs as jobs_model
from projections import messages as messages_model
from projections import output as output_model
from projections import phases as phases_model
from projections import projects as projects_model
from projections import workers as workers_model


def page(items: list[dict[str, Any]], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


class Queries:
    def __init__(self, store: EventStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._closing = asyncio.Event()

    def stop_waiting(self) -> None:
        """Answer every waiting job long-poll now, as it stands: the server is going away."""
        self._closing.set()

    @property
    def pool(self) -> asyncpg.Pool:
        return self.store.pool

    @asynccontextmanager
    async def _reading(self, caller: Caller) -> AsyncIterator[asyncpg.Connection]:
        """A request whose command waits to commit with its response reads its own writes
        in that transaction; every other read takes a pool connection."""
        held = caller.idempotency.conn if caller.idempotency is not None else None
        if held is not None:
            yield held
            return
        async with self.pool.acquire() as conn:
            yield conn

    # --- projects -----------------------------------------------------------------------------

    async def _project_row(
        self, conn: asyncpg.Connection, caller: Caller, project_id: UUID
    ) -> asyncpg.Record:
        return _visible(caller, await projects_model.get(conn, project_id), "project", project_id)

    async def projects(
        self,
        caller: Caller,
        *,
        status: str | None = None,
        project_type: str | None = None,
        archived: bool | None = False,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        async with self._reading(caller) as conn:
            rows, total = await projects_model.page(
                conn,
                owner=caller.viewer.owner_filter,
                status=status,
                project_type=project_type,
                archived=archived,
                limit=limit,
                offset=offset,
            )
        return page([project_view(r) for r in rows], total, limit, offset)

    async def project(self, caller: Caller, project_id: UUID) -> dict[str, Any]:
        """The project with its phase plan, current phase and latest job."""
        async with self._reading(caller) as conn:
            row = await self._project_row(conn, caller, project_id)
            latest = phases = None
            if row["latest_job_id"] is not None:
                latest = await jobs_model.get(conn, row["latest_job_id"])
                phases = await phases_model.of_job(conn, row["latest_job_id"])
            waiting = await _waiting(conn, [latest] if latest is not None else [])
        view = project_view(row)
        view["current_phase"] = current_phase(latest, phases or [])
        view["latest_job"] = None
        if latest is not None:
            view["latest_job"] = job_view(latest, waiting.get(latest["job_id"]))
        return view

    async def project_status(self, caller: Caller, project_id: UUID) -> dict[str, Any]:
        async with self._reading(caller) as conn:
            row = await self._project_row(conn, caller, project_id)
            latest = phases = None
            if row["latest_job_id"] is not None:
                latest = await jobs_model.get(conn, row["latest_job_id"])
                phases = await phases_model.of_job(conn, row["latest_job_id"])
            waiting = await _waiting(conn, [latest] if latest is not None else [])
        job: dict[str, Any] | None = None
        if latest is not None:
            full = job_view(latest, waiting.get(latest["job_id"]))
            job = {
                key: full[key]
                for key in ("id", "status", "progress", "cancel_requested", "error", "waiting")
            }
            job["stream_url"] = full["stream_url"]
        return {
            "project_id": str(row["project_id"]),
            "status": row["status"],
            "archived": row["archived"],
            "current_phase": current_phase(latest, phases or []),
            "latest_job": job,
            "updated_at": project_view(row)["updated_at"],
        }

    async def history(
        self, caller: Caller, project_id: UUID, *, after: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        """The project's events and its jobs' events, in log order, after a position."""
        async with self._reading(caller) as conn:
            await self._project_row(conn, caller, project_id)
        events = await self.store.read_all(after, limit, project_id=project_id)
        last = events[-1].position if events else after
        return {
            "items": [envelope.public(e) for e in events],
            "after": after,
            "limit": limit,
            "next_after": last,
            "has_more": len(events) == limit,
        }

    async def messages(
        self,
        caller: Caller,
        project_id: UUID,
        *,
        role: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        async with self._reading(caller) as conn:
            await self._project_row(conn, caller, project_id)
            rows, total = await messages_model.page(
                conn, project_id, role=role, limit=limit, offset=offset
            )
        return page([message_view(r) for r in rows], total, limit, offset)

    # --- jobs ---------------------------------------------------------------------------------

    async def _job_row(
        self, conn: asyncpg.Connection, caller: Caller, job_id: UUID
    ) -> asyncpg.Record:
        return _visible(caller, await jobs_model.get(conn, job_id), "job", job_id)

    async def jobs(
        self,
        caller: Caller,
        *,
        project_id: UUID | None = None,
        status: str | None = None,
        priority: JobPriority | None = None,
        dead_lettered: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        owner = caller.viewer.owner_filter
        async with self._reading(caller) as conn:
            rows, total = await jobs_model.page(
                conn,
                owner=owner,
                project_id=project_id,
                status=status,
                priority=priority,
                dead_lettered=dead_lettered,
                limit=limit,
                offset=offset,
            )
            waiting = await _waiting(conn, rows)
        return page([job_view(r, waiting.get(r["job_id"])) for r in rows], total, limit, offset)

    async def job(self, caller: Caller, job_id: UUID) -> dict[str, Any]:
        """The job with its phases (status, timings, cost) and the tail of its output."""
        async with self._reading(caller) as conn:
            row = await self._job_row(conn, caller, job_id)
            phases = await phases_model.of_job(conn, job_id)
            tail = await output_model.tail(conn, job_id, self.settings.output_tail_lines)
            waiting = await _waiting(conn, [row])
        view = job_view(row, waiting.get(job_id))
        view["phases"] = [phase_view(p) for p in phases]
        view["resources"] = resources_view(Resources.total(phase_resources(p) for p in phases))
        view["current_phase"] = current_phase(row, phases)
        view["output_tail"] = [line_view(line) for line in tail]
        return view

    async def wait_for_job(
        self, caller: Caller, job_id: UUID, wait: float
    ) -> tuple[dict[str, Any], int]:
        """The job once it is terminal or `wait` seconds passed (or the server is closing),
        with `waited_seconds`, and the log position the view reflects. It is read again each
        time the log's head moves (the head watcher, which polls on a slow timer besides),
        never on a timer of its own."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + wait
        watcher = self.store.head_watcher
        while True:
            head = watcher.head if watcher is not None else 0
            view = await self.job(caller, job_id)
            remaining = deadline - loop.time()
            if view["status"] in TERMINAL or remaining <= 0 or self._closing.is_set():
                view["waited_seconds"] = round(loop.time() - started, 3)
                return view, head
            await self._next_head(head, remaining)

    async def _next_head(self, seen: int, seconds: float) -> None:
        """Until the log's head passes `seen`, `seconds` pass, or the server closes."""
        watcher = self.store.head_watcher
        moved = asyncio.create_task(
            asyncio.sleep(seconds) if watcher is None else watcher.wait_for(seen + 1, seconds)
        )
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({moved, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([moved, closing])

    async def output(
        self,
        caller: Caller,
        job_id: UUID,
        *,
        phase: str | None = None,
        after: int = 0,
        limit: int = 500,
    ) -> dict[str, Any]:
        """Output lines after the job-wide line number `after` (each line's `n`)."""
        async with self._reading(caller) as conn:
            await self._job_row(conn, caller, job_id)
            lines = await output_model.page(conn, job_id, phase=phase, after=after, limit=limit)
            total = await output_model.count(conn, job_id, phase)
        return {
            "job_id": str(job_id),
            "phase": phase,
            "lines": [line_view(line) for line in lines],
            "after": after,
            "next_after": lines[-1]["seq"] if lines else after,
            "has_more": len(lines) == limit,
            "total": total,
        }


async def _waiting(
    conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]
) -> dict[UUID, Waiting | None]:
    """Why each queued job among `rows` can be claimed by no online worker, read now from the
    workers registry (so it changes as soon as a capable worker comes online or goes away)."""
    queued = [row["job_id"] for row in rows if row["status"] == "queued"]
    if not queued:
        return {}
    needs = await jobs_model.needs(conn, queued)
    offers = await workers_model.offers(conn, online=True)
    return {key: job_domain.unmet(needs.get(key, []), offers, "online") for key in queued}


def _visible(caller: Caller, row: asyncpg.Record | None, what: str, key: UUID) -> asyncpg.Record:
    """The row if it exists and the caller may see it; 404 otherwise (also for another user's,
    so its existence is not revealed)."""
    if row is None or not caller.may_see(row["owner"]):
        raise NotFound(f"{what} not found", **{f"{what}_id": str(key)})
    return row
