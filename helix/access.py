"""Who may see what: the one rule, once in Python and once in SQL.

Admins and auditors see everything. Anyone else sees what is theirs: the projects they own and
the jobs, workers and webhook endpoints recorded under their id (the owner-level form), and of
the log, the events of projects they own (a job's events carry its project's id) and the events
of their own user stream `user-<id>` (the event form). Another user's resource is reported as
missing, so its existence is not revealed.

The SQL fragments are the same rule for queries that filter rows in the database (audit pages,
list queries, the webhook dispatcher's set-based match). tests/property/test_access.py holds
the Python predicate and the SQL to the same answer on random histories.

Project ownership never changes after `project.created`, so `Ownership` caches owners in
memory; a project the cache has not met is looked up in the `projects` read model (inline, so
it is there as soon as the project's first event commits).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import asyncpg
import attrs

from helix.domain import user
from helix.domain.user import Role

if TYPE_CHECKING:
    from helix.eventstore import RecordedEvent

PROJECT_CREATED = "project.created"
# The roles that see everything; every other role sees what is its own.
SEES_EVERYTHING = frozenset({Role.ADMIN, Role.AUDITOR})


def sees_everything(role: Role) -> bool:
    return role in SEES_EVERYTHING


@attrs.frozen(kw_only=True)
class Viewer:
    """Whoever something may be shown to: a user id (as projects record owners) and whether
    their role sees everything."""

    user_id: str
    sees_everything: bool = False

    @property
    def owner_filter(self) -> str | None:
        """The owner a list query keeps: the viewer's own rows, or None (everyone's)."""
        return None if self.sees_everything else self.user_id


def may_see_owned(viewer: Viewer, owner: str | None) -> bool:
    """The owner-level form: whether the viewer may see a resource owned by `owner` (None:
    a resource that does not exist, or has no owner)."""
    return viewer.sees_everything or (owner is not None and owner == viewer.user_id)


class Located(Protocol):
    """Where an event is: all that the event form of the rule reads (a `RecordedEvent`, a
    stream's frame)."""

    @property
    def stream_id(self) -> str: ...

    @property
    def project_id(self) -> uuid.UUID | None: ...


def may_see(viewer: Viewer, event: Located, owner: str | None) -> bool:
    """The event form. `owner` is the owner of `event.project_id` (None if it has none)."""
    if viewer.sees_everything:
        return True
    if event.stream_id == f"{user.STREAM_TYPE}-{viewer.user_id}":
        return True
    return event.project_id is not None and may_see_owned(viewer, owner)


# --- the same rule in SQL ------------------------------------------------------------------
#
# Placeholders, each filled with an SQL expression by the query that uses the fragment:
#   {sees_everything}  boolean: the viewer sees everything;
#   {viewer}           text: the viewing user's id (as projects record owners);
#   {stream_id} {project_id}  the tested event's columns (event form);
#   {owner}            the tested row's owner, as text (owner-level form).
# `parameter_viewer` and `user_viewer` fill the first two for the two ways a query names its
# viewer; `event_visible` and `owned_visible` return the finished fragments.

USER_STREAM_SQL = f"'{user.STREAM_TYPE}-' || {{viewer}}"
OWNED_PROJECTS_SQL = "SELECT project_id FROM projects WHERE owner = {viewer}"
EVENT_VISIBLE_SQL = (
    f"({{sees_everything}} OR {{stream_id}} = {USER_STREAM_SQL}"
    f" OR {{project_id}} IN ({OWNED_PROJECTS_SQL}))"
)
OWNED_VISIBLE_SQL = "({sees_everything} OR {owner} = {viewer})"


def parameter_viewer(parameter: str) -> dict[str, str]:
    """A viewer passed as one query parameter (e.g. `$8`): `Viewer.owner_filter`, NULL for
    one who sees everything."""
    return {"sees_everything": f"{parameter}::text IS NULL", "viewer": f"{parameter}::text"}


def user_viewer(role: str, user_id: str) -> dict[str, str]:
    """A viewer named by a user row's columns (e.g. `u.role`, `w.owner`)."""
    roles = ", ".join(f"'{r.value}'" for r in sorted(SEES_EVERYTHING))
    return {"sees_everything": f"{role} IN ({roles})", "viewer": f"{user_id}::text"}


def event_visible(
    viewer: dict[str, str], *, stream_id: str = "stream_id", project_id: str = "project_id"
) -> str:
    """The event form in SQL: true for the events the viewer may see."""
    return EVENT_VISIBLE_SQL.format(**viewer, stream_id=stream_id, project_id=project_id)


def owned_visible(viewer: dict[str, str], *, owner: str = "owner") -> str:
    """The owner-level form in SQL: true for the rows the viewer may see."""
    return OWNED_VISIBLE_SQL.format(**viewer, owner=owner)


def user_stream(viewer: dict[str, str]) -> str:
    """The viewer's own user stream id, in SQL (for queries that read it through its index)."""
    return USER_STREAM_SQL.format(**viewer)


def owned_projects(viewer: dict[str, str]) -> str:
    """The ids of the projects the viewer owns, as an SQL subquery."""
    return OWNED_PROJECTS_SQL.format(**viewer)


# For `helix.sql.load(..., shared=LIST_FRAGMENTS)`: list queries that take their
# viewer's `owner_filter` as $1 say `{owner_visible}` for the rows it may see.
LIST_FRAGMENTS = {"owner_visible": owned_visible(parameter_viewer("$1"))}

# $1 uuid[]: the owners of the given projects (projects that do not exist are left out).
PROJECT_OWNERS = "SELECT project_id, owner FROM projects WHERE project_id = ANY ($1::uuid[])"


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
