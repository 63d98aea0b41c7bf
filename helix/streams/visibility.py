"""Who may see an event: the one rule every live stream (and the webhook dispatcher) applies.

Admins and auditors see every event. Anyone else sees the events of projects they own (a job's
events carry its project's id) and the events of their own user stream `user-<id>`. Project
ownership never changes after `project.created`, so owners are cached in memory; a project the
cache has not met is looked up in the `projects` read model (inline, so it is there as soon as
the project's first event commits).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable

import asyncpg
import attrs

from helix.eventstore import RecordedEvent
from helix.streams.sql import PROJECT_OWNERS

PROJECT_CREATED = "project.created"


@attrs.frozen(kw_only=True)
class Viewer:
    """Whoever an event may be shown to: a user id (as projects record owners) and whether
    their role sees everything."""

    user_id: str
    sees_everything: bool = False


def may_see(viewer: Viewer, event: RecordedEvent, owner: str | None) -> bool:
    """The rule. `owner` is the owner of `event.project_id` (None if it has none)."""
    if viewer.sees_everything:
        return True
    if event.stream_id == f"user-{viewer.user_id}":
        return True
    return event.project_id is not None and owner is not None and owner == viewer.user_id


class Ownership:
    """Project id → owner, cached (bounded, least recently added first out)."""

    def __init__(self, pool: asyncpg.Pool, max_size: int = 100_000) -> None:
        self._pool = pool
        self._max_size = max_size
        self._owners: OrderedDict[uuid.UUID, str] = OrderedDict()
        self.lookups = 0  # database queries made, for tests and the benchmark

    def observe(self, event: RecordedEvent) -> None:
        """Learn an owner from a `project.created` event passing by (no query needed)."""
        if event.type == PROJECT_CREATED and event.project_id is not None:
            owner = event.data.get("owner")
            if isinstance(owner, str):
                self._remember(event.project_id, owner)

    def _remember(self, project_id: uuid.UUID, owner: str) -> None:
        self._owners[project_id] = owner
        if len(self._owners) > self._max_size:
            self._owners.popitem(last=False)

    def cached(self, project_id: uuid.UUID) -> str | None:
        return self._owners.get(project_id)

    async def owners(self, project_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        """The owner of each project (None for one that does not exist), one query for all
        the ones not cached."""
        found: dict[uuid.UUID, str | None] = {}
        missing: list[uuid.UUID] = []
        for project_id in set(project_ids):
            owner = self._owners.get(project_id)
            found[project_id] = owner
            if owner is None:
                missing.append(project_id)
        if missing:
            self.lookups += 1
            for row in await self._pool.fetch(PROJECT_OWNERS, missing):
                self._remember(row["project_id"], row["owner"])
                found[row["project_id"]] = row["owner"]
        return found

    async def owner_of(self, project_id: uuid.UUID | None) -> str | None:
        if project_id is None:
            return None
        return (await self.owners([project_id]))[project_id]

    async def may_see(self, viewer: Viewer, event: RecordedEvent) -> bool:
        """`may_see` with the owner looked up: for consumers outside the tailer (webhooks)."""
        if viewer.sees_everything:
            return True
        return may_see(viewer, event, await self.owner_of(event.project_id))
