"""Who may see what, on random users, projects and events: the Python predicate of
`helix.access` and its SQL fragments, run against the real database, agree on every event and
every owned row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from event_records import recorded_event
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helix import access
from helix.access import Viewer, may_see, may_see_owned
from helix.bootstrap import LogNode
from helix.domain.user import Role
from helix.eventstore import RecordedEvent

T0 = datetime(2024, 5, 1, tzinfo=UTC)
USERS = tuple(uuid.UUID(int=n) for n in range(1, 5))
STRANGER = uuid.UUID(int=99)  # owns projects, has no user row, never views
PROJECTS = tuple(uuid.UUID(int=1000 + n) for n in range(5))
MISSING_PROJECT = uuid.UUID(int=2000)  # named by events, absent from the read model

# A history: each user's role, each project's owner (None: the project does not exist), and
# events as (stream id, project id) pairs.
roles = st.tuples(*[st.sampled_from(list(Role)) for _ in USERS])
owners = st.tuples(*[st.sampled_from([*USERS, STRANGER, None]) for _ in PROJECTS])
stream_ids = st.one_of(
    st.sampled_from([f"user-{u}" for u in (*USERS, STRANGER)]),
    st.sampled_from([f"project-{p}" for p in PROJECTS]),
    st.sampled_from(["job-1", "auth-failures-2024-05-01", "webhook-1", "worker-1", "user-"]),
)
events = st.lists(
    st.tuples(stream_ids, st.sampled_from([None, *PROJECTS, MISSING_PROJECT])), max_size=30
)

INSERT_USER = """
INSERT INTO users (user_id, username, role, created_at, updated_at, version)
VALUES ($1, $2, $3, $4, $4, 1)
"""
INSERT_PROJECT = """
INSERT INTO projects (project_id, name, description, project_type, owner, status, archived,
                      phases, message_count, created_at, updated_at, version)
VALUES ($1, 'p', '', 'general', $2, 'draft', false, '[]', 0, $3, $3, 1)
"""
# The candidate events, numbered, as the rows a query over `events` tests.
EVENTS = "unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS ev(stream_id, project_id, n)"
COLUMNS = {"stream_id": "ev.stream_id", "project_id": "ev.project_id"}
# The viewer given as a parameter ($3: `Viewer.owner_filter`), as the audit queries do.
BY_PARAMETER = f"SELECT n FROM {EVENTS} WHERE " + access.event_visible(
    access.parameter_viewer("$3"), **COLUMNS
)
# Every viewer at once, named by its user row, as the webhook dispatcher does.
BY_USER_ROW = (
    f"SELECT u.user_id, ev.n FROM users u CROSS JOIN {EVENTS} WHERE "
    + access.event_visible(access.user_viewer("u.role", "u.user_id"), **COLUMNS)
)
OWNED = "SELECT project_id FROM projects WHERE " + access.owned_visible(
    access.parameter_viewer("$1")
)
LISTED = "SELECT project_id FROM projects WHERE " + access.LIST_FRAGMENTS["owner_visible"]


def recorded(n: int, stream_id: str, project_id: uuid.UUID | None) -> RecordedEvent:
    return recorded_event("test.happened", stream_id, project_id, position=n)


async def store_history(
    pool: asyncpg.Pool,
    role_of: dict[uuid.UUID, Role],
    owner_of: dict[uuid.UUID, uuid.UUID | None],
) -> None:
    await pool.execute("TRUNCATE users, projects CASCADE")
    for user_id, role in role_of.items():
        await pool.execute(INSERT_USER, user_id, f"u{user_id.int}", role.value, T0)
    for project_id, owner in owner_of.items():
        if owner is not None:
            await pool.execute(INSERT_PROJECT, project_id, str(owner), T0)


def viewer_of(user_id: uuid.UUID, role: Role) -> Viewer:
    return Viewer(user_id=str(user_id), sees_everything=access.sees_everything(role))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(roles=roles, owners=owners, history=events)
async def test_the_python_predicate_and_the_sql_fragments_agree_on_every_event(
    node: LogNode,
    roles: tuple[Role, ...],
    owners: tuple[uuid.UUID | None, ...],
    history: list[tuple[str, uuid.UUID | None]],
) -> None:
    pool = node.store.pool
    role_of = dict(zip(USERS, roles, strict=True))
    owner_of = dict(zip(PROJECTS, owners, strict=True))
    await store_history(pool, role_of, owner_of)
    recorded_events = [recorded(n, s, p) for n, (s, p) in enumerate(history, start=1)]
    streams = [e.stream_id for e in recorded_events]
    projects = [e.project_id for e in recorded_events]
    project_owner = {p: str(o) for p, o in owner_of.items() if o is not None}

    def python_sees(viewer: Viewer) -> set[int]:
        return {
            n
            for n, e in enumerate(recorded_events, start=1)
            if may_see(viewer, e, project_owner.get(e.project_id))
        }

    by_row: dict[str, set[int]] = {str(u): set() for u in USERS}
    for row in await pool.fetch(BY_USER_ROW, streams, projects):
        by_row[str(row["user_id"])].add(row["n"])
    for user_id, role in role_of.items():
        viewer = viewer_of(user_id, role)
        expected = python_sees(viewer)
        rows = await pool.fetch(BY_PARAMETER, streams, projects, viewer.owner_filter)
        assert {r["n"] for r in rows} == expected, (viewer, history)
        assert by_row[str(user_id)] == expected, (viewer, history)
        if not viewer.sees_everything:
            event("a user saw some events" if expected else "a user saw none")

        owned = {p for p, o in project_owner.items() if may_see_owned(viewer, o)}
        assert {r["project_id"] for r in await pool.fetch(OWNED, viewer.owner_filter)} == owned
        assert {r["project_id"] for r in await pool.fetch(LISTED, viewer.owner_filter)} == owned
