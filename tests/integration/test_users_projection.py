"""The users read model is rebuildable from the log and idempotent per event."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.domain.user import Role
from helix.errors import Conflict, Unauthorized
from helix.services import system_caller
from projections.rebuild import rebuild
from projections.users import PROJECTION

CALLER = attrs.evolve(system_caller("test"), actor="test", source="pytest")
SNAPSHOT_USERS = (
    "SELECT user_id, username, role, disabled, last_login_at, version FROM {t} ORDER BY user_id"
)
SNAPSHOT_KEYS = "SELECT key_id, user_id, prefix, key_sha256, revoked_at FROM {t} ORDER BY key_id"


async def _snapshot(conn: Any, users: str, api_keys: str) -> tuple[list[Any], list[Any]]:
    return (
        [tuple(r) for r in await conn.fetch(SNAPSHOT_USERS.format(t=users))],
        [tuple(r) for r in await conn.fetch(SNAPSHOT_KEYS.format(t=api_keys))],
    )


async def test_replaying_the_user_streams_into_fresh_tables_equals_the_live_tables(
    node: LogNode,
) -> None:
    accounts = Accounts(node.store)
    admin = await accounts.create_user("root", Role.ADMIN, None, caller=CALLER)
    carol = await accounts.create_user("carol", Role.USER, "correct horse", caller=CALLER)
    key, _ = await accounts.create_key(carol.user_id, "k", caller=CALLER)
    await accounts.update_user(carol.user_id, role=Role.AUDITOR, caller=CALLER)
    await accounts.login("carol", "correct horse", caller=CALLER)
    await accounts.revoke_key(key.key_id, owner=None, caller=CALLER)
    await accounts.update_user(carol.user_id, disabled=True, caller=CALLER)
    await accounts.create_key(admin.user_id, "k2", caller=CALLER)
    assert node.pool is not None

    async with node.pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE users_new (LIKE users INCLUDING ALL)")
        await conn.execute("CREATE TEMP TABLE api_keys_new (LIKE api_keys INCLUDING ALL)")
        fresh = {"users": "users_new", "api_keys": "api_keys_new"}
        events = []
        for user_id in (admin.user_id, carol.user_id):
            events += await node.store.read_stream(f"user-{user_id}", conn=conn)
        for event in events + events:  # twice: applying again changes nothing
            await PROJECTION.apply(conn, event, fresh)
        rebuilt = await _snapshot(conn, "users_new", "api_keys_new")
        live = await _snapshot(conn, "users", "api_keys")

    assert rebuilt == live
    assert live[0] and live[1]


FULL_USERS = "SELECT * FROM users ORDER BY user_id"
FULL_KEYS = "SELECT * FROM api_keys ORDER BY key_id"
PASSWORDS = "SELECT user_id, password_hash FROM user_passwords ORDER BY user_id"


async def _history(accounts: Accounts) -> list[uuid.UUID]:
    """Creations, role changes, disabling and enabling, passwords, keys, revocations and logins
    that succeed and fail; the ids of the users it made."""
    admin = await accounts.create_user("root", Role.ADMIN, "root password", caller=CALLER)
    carol = await accounts.create_user("carol", Role.USER, "correct horse", caller=CALLER)
    dave = await accounts.create_user(
        "dave", Role.WORKER, None, caller=CALLER, external_subject="https://issuer|dave"
    )
    first, _ = await accounts.create_key(carol.user_id, "first", caller=CALLER)
    await accounts.create_key(carol.user_id, "second", caller=CALLER)
    await accounts.create_key(dave.user_id, "worker", caller=CALLER)
    await accounts.login("carol", "correct horse", caller=CALLER)
    for wrong in ("carol", "dave", "nobody"):
        with pytest.raises(Unauthorized):
            await accounts.login(wrong, "not the password", caller=CALLER)
    await accounts.update_user(carol.user_id, role=Role.AUDITOR, caller=CALLER)
    await accounts.update_user(carol.user_id, role=Role.ADMIN, disabled=True, caller=CALLER)
    with pytest.raises(Unauthorized):
        await accounts.login("carol", "correct horse", caller=CALLER)
    await accounts.update_user(carol.user_id, disabled=False, caller=CALLER)
    await accounts.set_password(carol.user_id, "battery staple", caller=CALLER)
    await accounts.revoke_key(first.key_id, owner=None, caller=CALLER)
    await accounts.update_user(dave.user_id, disabled=True, caller=CALLER)
    await accounts.login("root", "root password", caller=CALLER)
    return [admin.user_id, carol.user_id, dave.user_id]


async def test_helix_projections_rebuild_users_gives_the_live_tables_and_keeps_the_passwords(
    node: LogNode,
) -> None:
    accounts = Accounts(node.store)
    await _history(accounts)
    pool = node.store.pool
    users, api_keys, hashes = [
        [tuple(r) for r in await pool.fetch(q)] for q in (FULL_USERS, FULL_KEYS, PASSWORDS)
    ]
    assert len(users) == 3 and len(api_keys) == 3 and len(hashes) == 2

    report = await rebuild(node.store, PROJECTION)

    assert report.events > 0
    assert [tuple(r) for r in await pool.fetch(FULL_USERS)] == users
    assert [tuple(r) for r in await pool.fetch(FULL_KEYS)] == api_keys
    # The credential table is no projection: the rebuild left it alone, and logins work on.
    assert [tuple(r) for r in await pool.fetch(PASSWORDS)] == hashes
    assert (await accounts.login("carol", "battery staple", caller=CALLER)).username == "carol"


async def test_every_user_event_carries_the_callers_full_metadata(node: LogNode) -> None:
    accounts = Accounts(node.store)
    user_ids = await _history(accounts)
    pool = node.store.pool
    streams = [f"user-{u}" for u in user_ids] + [f"auth-failures-{datetime.now(UTC).date()}"]

    rows = await pool.fetch(
        "SELECT stream_id, type, metadata, data FROM events WHERE stream_id = ANY($1::text[])"
        " ORDER BY stream_id, version",
        streams,
    )

    assert {r["stream_id"] for r in rows} == set(streams)
    for row in rows:
        metadata = row["metadata"]
        proven = row["type"] == "auth.login_succeeded"
        actor = f"user:{row['data']['user_id']}" if proven else "test"
        assert metadata == {
            "actor": actor,
            "request_id": CALLER.request_id,
            "correlation_id": CALLER.request_id,
            "causation_id": None,
            "source": "pytest",
        }, row["type"]
    password_changes = [r for r in rows if r["type"] == "user.password_changed"]
    assert len(password_changes) == 1 and set(password_changes[0]["data"]) == {"user_id", "at"}


EXTERNAL_USERS = "SELECT username, external_subject FROM users WHERE external_subject IS NOT NULL"


@pytest.mark.parametrize("local_name", [None, "dave"], ids=["free name", "name taken locally"])
async def test_concurrent_first_requests_of_one_external_subject_provision_one_user(
    accounts: Accounts, node: LogNode, local_name: str | None
) -> None:
    # With the name taken, each request picks its own suffixed name, so only the subject's
    # unique index can tell them apart.
    if local_name is not None:
        await accounts.create_user(local_name, Role.USER, None, caller=CALLER)

    users = await asyncio.gather(
        *(accounts.external_user("https://issuer", "dave", caller=CALLER) for _ in range(8))
    )

    assert len({u.user_id for u in users}) == 1
    assert node.pool is not None
    rows = await node.pool.fetch(EXTERNAL_USERS)
    assert [r["external_subject"] for r in rows] == ["https://issuer|dave"]
    assert rows[0]["username"] == users[0].username != local_name
    created = await node.pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'user.created'"
        " AND data->>'external_subject' = 'https://issuer|dave'"
    )
    assert created == 1


async def test_concurrent_first_requests_of_subjects_that_share_a_name_provision_one_user_each(
    accounts: Accounts, node: LogNode
) -> None:
    subjects = ["dave smith", "dave/smith", "dave:smith", "dave_smith"]  # one username: dave_smith

    sent = subjects * 2
    users = await asyncio.gather(
        *(accounts.external_user("https://issuer", s, caller=CALLER) for s in sent)
    )

    ids: dict[str, set[uuid.UUID]] = {}
    for subject, user in zip(sent, users, strict=True):
        ids.setdefault(subject, set()).add(user.user_id)
    assert sorted(len(each) for each in ids.values()) == [1] * len(subjects), ids
    assert node.pool is not None
    assert len(await node.pool.fetch(EXTERNAL_USERS)) == len(subjects)


async def test_a_rebuilt_users_table_still_refuses_a_second_user_for_one_external_subject(
    accounts: Accounts, node: LogNode
) -> None:
    first = await accounts.external_user("https://issuer", "erin", caller=CALLER)
    await rebuild(node.store, PROJECTION)

    with pytest.raises(Conflict) as refused:
        await accounts.create_user(
            "erin-2", Role.USER, None, caller=CALLER, external_subject="https://issuer|erin"
        )

    assert refused.value.details == {"external_subject": "https://issuer|erin"}

    again = await accounts.external_user("https://issuer", "erin", caller=CALLER)
    assert again.user_id == first.user_id
