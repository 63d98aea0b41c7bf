"""HELIX_PHASE_COMMANDS over HTTP: who may give a phase a command of their own, at every
entry of a phase plan (create, replan) and at every run, with a 403 that names the rule and
appends nothing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.config import PhaseCommands, Settings

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]
OWN = [{"name": "plan"}, {"name": "build", "command": ["make", "all"]}]
TEMPLATE_PHASE = {"name": "test", "command": ["make", "test"], "env": {"CI": "1"}}


@pytest.fixture
def templates_file(tmp_path: Path) -> Path:
    path = tmp_path / "templates.json"
    path.write_text(json.dumps({"templates": {"ci": [TEMPLATE_PHASE]}}), encoding="utf-8")
    return path


@pytest.fixture
async def ruled(make_client: MakeClient, templates_file: Path) -> Callable[..., Awaitable[Client]]:
    """A client on an app whose HELIX_PHASE_COMMANDS is the given rule."""

    async def make(rule: PhaseCommands) -> Client:
        return await make_client(phase_commands=rule, phase_templates_file=templates_file)

    return make


async def events(node: LogNode) -> int:
    assert node.pool is not None
    return int(await node.pool.fetchval("SELECT count(*) FROM events"))


async def create(client: Client, who: Any, status: int = 201, **body: Any) -> Any:
    resp = await client.post("/api/v1/projects", json={"name": "p", **body}, headers=who.headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


def assert_refused(body: Any, rule: str, field: str = "phases[1].command") -> None:
    assert body["request_id"]
    error = body["error"]
    assert error["code"] == "FORBIDDEN"
    assert f"HELIX_PHASE_COMMANDS={rule}" in error["message"]
    assert error["details"]["rule"] == rule
    assert error["details"]["field"] == field


async def test_by_default_anyone_may_give_a_phase_a_command(
    client: Client, user: Any, node: LogNode
) -> None:
    assert Settings.from_env({}).phase_commands is PhaseCommands.ANYONE
    project = await create(client, user, phases=OWN)
    assert project["phases"][1]["command"] == ["make", "all"]


async def test_with_admins_a_user_may_not_create_or_replan_with_a_command_of_their_own(
    ruled: Callable[..., Awaitable[Client]], user: Any, admin: Any, node: LogNode
) -> None:
    client = await ruled(PhaseCommands.ADMINS)
    before = await events(node)
    assert_refused(await create(client, user, 403, phases=OWN), "admins")
    assert await events(node) == before

    project = await create(client, user, phases=[{"name": "plan"}])
    before = await events(node)
    resp = await client.patch(
        f"/api/v1/projects/{project['id']}",
        json={"name": "renamed", "phases": OWN},
        headers=user.headers,
    )
    assert resp.status == 403
    assert_refused(await resp.json(), "admins")
    assert await events(node) == before  # the rename was not applied either

    await create(client, admin, phases=OWN)
    resp = await client.patch(
        f"/api/v1/projects/{project['id']}", json={"phases": OWN}, headers=admin.headers
    )
    assert resp.status == 200, await resp.text()


async def test_a_configured_templates_phases_are_anyones_but_not_a_changed_copy(
    ruled: Callable[..., Awaitable[Client]], user: Any, node: LogNode
) -> None:
    for rule in (PhaseCommands.ADMINS, PhaseCommands.TEMPLATES):
        client = await ruled(rule)
        named = await create(client, user, template="ci")
        assert named["phases"][0]["command"] == ["make", "test"]
        copied = await create(client, user, phases=[{"name": "x"}, TEMPLATE_PHASE])
        assert copied["phases"][1]["command"] == ["make", "test"]
        before = await events(node)
        for changed in (
            {**TEMPLATE_PHASE, "command": ["make", "test", "deploy"]},
            {**TEMPLATE_PHASE, "env": {"CI": "1", "LD_PRELOAD": "evil.so"}},
        ):
            body = await create(client, user, 403, phases=[{"name": "x"}, changed])
            assert_refused(body, rule.value)
        assert await events(node) == before


async def test_with_templates_not_even_an_admin_may_write_a_command(
    ruled: Callable[..., Awaitable[Client]], admin: Any, node: LogNode
) -> None:
    client = await ruled(PhaseCommands.TEMPLATES)
    before = await events(node)
    assert_refused(await create(client, admin, 403, phases=OWN), "templates")
    assert await events(node) == before
    await create(client, admin, phases=[{"name": "plan"}])
    await create(client, admin)  # the default template's phases have no commands


async def test_a_tightened_rule_refuses_to_run_commands_written_before_it(
    client: Client,
    ruled: Callable[..., Awaitable[Client]],
    user: Any,
    admin: Any,
    node: LogNode,
) -> None:
    project = await create(client, user, phases=OWN)
    resp = await client.post(f"/api/v1/projects/{project['id']}/ready", headers=user.headers)
    assert resp.status == 200
    execute = f"/api/v1/projects/{project['id']}/execute"

    admins = await ruled(PhaseCommands.ADMINS)
    before = await events(node)
    resp = await admins.post(execute, headers=user.headers)
    assert resp.status == 403
    assert_refused(await resp.json(), "admins")
    templates_only = await ruled(PhaseCommands.TEMPLATES)
    resp = await templates_only.post(execute, headers=admin.headers)
    assert resp.status == 403
    assert_refused(await resp.json(), "templates")
    assert await events(node) == before

    resp = await admins.post(execute, headers=admin.headers)
    assert resp.status == 202, await resp.text()


def test_an_unknown_rule_is_refused_at_startup_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="anyone, admins, templates"):
        Settings.from_env({"HELIX_PHASE_COMMANDS": "everyone"})
    assert Settings.from_env({"HELIX_PHASE_COMMANDS": "admins"}).phase_commands == "admins"
