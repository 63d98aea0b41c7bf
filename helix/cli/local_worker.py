"""The worker `helix serve` runs beside the API by default, so that executing a project with
shell phases works out of the box.

It is the reference worker (`helix.worker`), talking to this process's own API over loopback
like any other worker. It acts as the user `helix-worker` (role worker, created when missing)
with an API key made for this run and revoked when the run stops; keys a crashed run left
behind are revoked at the next start. Its phases run like any worker's (`helix.worker.isolation`):
when Helix runs as root, as the unprivileged `HELIX_PHASE_USER`, which may pass through the data
dir to the workspaces in it but not list or read it.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from helix.auth.accounts import Accounts
from helix.config import Settings
from helix.domain.user import Role
from helix.errors import NotFound
from helix.services import system_caller
from helix.worker import Worker, WorkerConfig
from helix.worker.isolation import PhaseUser

log = logging.getLogger(__name__)

USERNAME = "helix-worker"
KEY_NAME = "helix serve in-process worker"
CALLER = attrs.evolve(system_caller("serve"), source="helix serve")


class LocalWorker:
    def __init__(self, accounts: Accounts, settings: Settings, server: str) -> None:
        self._accounts = accounts
        self._settings = settings
        self._server = server
        self._worker: Worker | None = None
        self._key_id: Any = None

    async def start(self) -> None:
        try:
            user = await self._accounts.by_username(USERNAME)
        except NotFound:
            user = await self._accounts.create_user(USERNAME, Role.WORKER, None, caller=CALLER)
        for old in await self._accounts.list_keys(user.user_id, include_revoked=False):
            if old.name == KEY_NAME:
                await self._accounts.revoke_key(old.key_id, owner=None, caller=CALLER)
        record, key = await self._accounts.create_key(user.user_id, KEY_NAME, caller=CALLER)
        self._key_id = record.key_id
        config = WorkerConfig(
            server=self._server,
            key=key,
            capabilities=("shell",),
            name="helix serve",
            workdir=self._settings.data_dir / "workspaces",
            phase_user=self._settings.phase_user,
        )
        self._worker = Worker(config)
        await self._worker.start()

    @property
    def phase_user(self) -> PhaseUser:
        user = None if self._worker is None else self._worker.phase_user
        if user is None:
            raise RuntimeError("the in-process worker has not started")
        return user

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        if self._key_id is not None:
            try:
                await self._accounts.revoke_key(self._key_id, owner=None, caller=CALLER)
            except Exception:  # the database may already be going away; the next start cleans up
                log.warning("could not revoke the in-process worker's key", exc_info=True)
            self._key_id = None
