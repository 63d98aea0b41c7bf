"""The users read model is rebuildable from the log and idempotent per event."""

from __future__ import annotations

from typing import Any

import attrs

from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.domain.user import Role
from helix.services import system_caller
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
