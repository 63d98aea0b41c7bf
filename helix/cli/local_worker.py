"""The worker `helix serve` runs beside the API by default, so that executing a project with
shell phases works out of the box.

It is the reference worker (`helix.worker`), talking to this process's own API over loopback
like any other worker. It acts as the user `helix-worker` (role worker, created when missing)
with an API key made for this run and revoked when the run stops. The key is named for this
node (its hostname, port and the node id kept in its data dir), so that a crashed run's key is
revoked at the node's next start while the keys of other nodes on the same database, each
with its own in-process worker, are left alone. Its phases run like any worker's
(`helix.worker.isolation`): when Helix runs as root, as the unprivileged `HELIX_PHASE_USER`,
which may pass through the data dir to the workspaces in it but not list or read it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import attrs

from helix.auth.accounts import Accounts
from helix.config import Settings
from helix.domain.user import Role
from helix.errors import NotFound
from helix.services import system_caller, templates
from helix.system_users import private_file
from helix.worker import Worker, WorkerConfig
from helix.worker.config import CLAIM_WAIT_S
from helix.worker.isolation import PhaseUser

log = logging.getLogger(__name__)

USERNAME = "helix-worker"
KEY_NAME = "helix serve in-process worker"
CALLER = attrs.evolve(system_caller("serve"), source="helix serve")
NODE_ID_FILE = "node-id"


def node_id(data_dir: Path) -> str:
    """This node's id: made on its first start and kept in its data dir."""
    path = data_dir / NODE_ID_FILE
    try:
        text = path.read_text().strip()
        return str(uuid.UUID(text))
    except (FileNotFoundError, ValueError):
        pass
    made = str(uuid.uuid4())
    data_dir.mkdir(parents=True, exist_ok=True)
    with private_file(path.with_name(f".{NODE_ID_FILE}.{os.getpid()}")) as out:
        out.truncate(0)
        out.write(made.encode())
    os.replace(path.with_name(f".{NODE_ID_FILE}.{os.getpid()}"), path)
    return made


def key_name(settings: Settings) -> str:
    """The name of this node's in-process worker key: one node's key, never another's."""
    where = f"{socket.gethostname()[:64]}:{settings.port}"
    return f"{KEY_NAME} on {where} (node {node_id(settings.data_dir)})"


def capabilities(settings: Settings) -> tuple[str, ...]:
    """`shell`, and with an agent command what it lets this worker run (the templates' phases
    without a command among them)."""
    if settings.agent_command is None:
        return ("shell",)
    return ("shell", *templates.agent_capabilities(settings))


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
        name = key_name(self._settings)
        for old in await self._accounts.list_keys(user.user_id, include_revoked=False):
            if old.name == name:
                await self._accounts.revoke_key(old.key_id, owner=None, caller=CALLER)
        record, key = await self._accounts.create_key(user.user_id, name, caller=CALLER)
        self._key_id = record.key_id
        config = WorkerConfig(
            server=self._server,
            key=key,
            capabilities=capabilities(self._settings),
            name="helix serve",
            workdir=self._settings.data_dir / "workspaces",
            phase_user=self._settings.phase_user,
            output_filter=self._settings.output_filter_patterns,
            agent_command=self._settings.agent_command,
            # A long-poll no longer than this server allows (HELIX_CLAIM_MAX_WAIT).
            claim_wait=min(CLAIM_WAIT_S, int(self._settings.claim_max_wait)),
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
