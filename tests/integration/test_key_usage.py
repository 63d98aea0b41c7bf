"""An API key's `last_used_at`: written now and then, never waiting on the key's row lock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.domain.user import Role
from helix.services import system_caller

CALLER = system_caller("test")
LAST_USED = "SELECT last_used_at FROM api_key_usage WHERE key_id = $1"


async def _key(accounts: Accounts) -> tuple[str, object]:
    user = await accounts.create_user("keyed", Role.USER, None, caller=CALLER)
    record, key = await accounts.create_key(user.user_id, "k", caller=CALLER)
    return key, record.key_id


async def test_a_recently_used_key_is_accepted_while_its_usage_row_is_locked(
    node: LogNode, database_url: str
) -> None:
    key, key_id = await _key(Accounts(node.store))
    await Accounts(node.store).authenticate_key(key, now=datetime.now(UTC), caller=CALLER)
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute(f"{LAST_USED} FOR UPDATE", key_id)
            # Another process (no memory of the key) accepts it without waiting for the lock.
            other = Accounts(node.store)
            accepted = other.authenticate_key(key, now=datetime.now(UTC), caller=CALLER)
            user, _ = await asyncio.wait_for(accepted, 30)
        assert user.username == "keyed"
    finally:
        await holder.close()


async def test_a_key_used_after_the_interval_moves_its_last_use(node: LogNode) -> None:
    accounts = Accounts(node.store)
    key, key_id = await _key(accounts)
    assert node.pool is not None
    await accounts.authenticate_key(key, now=datetime.now(UTC), caller=CALLER)
    first = await node.pool.fetchval(LAST_USED, key_id)
    assert first is not None
    await node.pool.execute(
        "UPDATE api_key_usage SET last_used_at = last_used_at - interval '1 hour'"
        " WHERE key_id = $1",
        key_id,
    )
    # This process wrote it a moment ago: it does not write again.
    await accounts.authenticate_key(key, now=datetime.now(UTC), caller=CALLER)
    assert await node.pool.fetchval(LAST_USED, key_id) < first
    # Another process does, since the database's record is old.
    await Accounts(node.store).authenticate_key(key, now=datetime.now(UTC), caller=CALLER)
    assert await node.pool.fetchval(LAST_USED, key_id) >= first
