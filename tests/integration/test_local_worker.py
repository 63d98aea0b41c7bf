"""The in-process worker of `helix serve`, one per node on a shared database: each node's start
revokes only the key its own earlier run left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from aiohttp.test_utils import TestClient

from helix.auth.accounts import Accounts
from helix.cli.local_worker import USERNAME, LocalWorker, key_name, node_id
from helix.config import Settings


async def _active_keys(accounts: Accounts) -> dict[str, int]:
    user = await accounts.by_username(USERNAME)
    names: dict[str, int] = {}
    for key in await accounts.list_keys(user.user_id, include_revoked=False):
        names[key.name] = names.get(key.name, 0) + 1
    return names


async def test_two_nodes_in_process_workers_never_revoke_each_others_keys(
    client: TestClient[Any, Any], accounts: Accounts, settings: Settings, tmp_path: Path
) -> None:
    server = str(client.make_url("/")).rstrip("/")
    # No phase runs here: as root, phases as root, so no phase user is taken from other tests.
    one = attrs.evolve(settings, data_dir=tmp_path / "one", port=8101, phase_user="root")
    two = attrs.evolve(settings, data_dir=tmp_path / "two", port=8101, phase_user="root")
    first, second = LocalWorker(accounts, one, server), LocalWorker(accounts, two, server)
    restarted = LocalWorker(accounts, one, server)
    try:
        await first.start()
        await second.start()
        assert key_name(one) != key_name(two)
        assert await _active_keys(accounts) == {key_name(one): 1, key_name(two): 1}

        # Node one comes back after a crash (its first run never stopped): its own stale key
        # is revoked, node two's is not.
        await restarted.start()
        assert await _active_keys(accounts) == {key_name(one): 1, key_name(two): 1}
    finally:
        for local in (restarted, second, first):
            await local.stop()
    assert await _active_keys(accounts) == {}


def test_a_nodes_id_is_kept_in_its_data_dir(tmp_path: Path) -> None:
    made = node_id(tmp_path / "data")
    assert node_id(tmp_path / "data") == made
    assert (tmp_path / "data" / "node-id").read_text() == made
    assert node_id(tmp_path / "other") != made
