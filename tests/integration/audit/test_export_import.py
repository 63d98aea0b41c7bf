"""Export and import: a log exported and imported into a fresh database is the same log (same
rows, positions, hashes and head) with the same read models; a bad or unwelcome import changes
nothing."""

from __future__ import annotations

import argparse
import io
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helix.api.app import create_app
from helix.audit import credentials
from helix.audit.export import export_events
from helix.audit.filters import EventFilter
from helix.audit.importer import InvalidExport, StoreNotEmpty, import_log, load
from helix.bootstrap import LogNode
from helix.cli import events_io
from helix.config import Settings
from helix.database import create_pool
from helix.eventstore import EventStore, verify_chain
from helix.serialization import default_registry
from projections import registry
from tests.support import settled

EVENT_COLUMNS = (
    "position, event_id, stream_id, stream_type, version, project_id, type, schema_version, "
    "data, metadata, recorded_at, hash"
)
READ_TABLES = [t for p in registry.ALL for t in p.tables]


async def snapshot(pool: asyncpg.Pool) -> dict[str, Any]:
    """Everything an import must reproduce (and a refused one must leave alone)."""
    taken: dict[str, Any] = {
        "events": [
            dict(r) for r in await pool.fetch(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY 1")
        ],
        "streams": [
            dict(r)
            for r in await pool.fetch(
                "SELECT stream_id, stream_type, project_id, version FROM streams ORDER BY 1"
            )
        ],
        "head": tuple(await pool.fetchrow("SELECT head_position, head_hash FROM sequencer_state")),
    }
    for table in READ_TABLES:
        rows = await pool.fetch(f"SELECT * FROM {table}")
        taken[table] = sorted((dict(r) for r in rows), key=repr)
    return taken


async def export_text(pool: asyncpg.Pool, selection: EventFilter | None = None) -> str:
    out = io.StringIO()
    await export_events(pool, out, selection, page_size=7)
    return out.getvalue()


async def test_an_export_imported_into_a_fresh_database_has_the_same_log_and_read_models(
    node: LogNode,
    user: Any,
    other_user: Any,
    history: Callable[..., Any],
    second_database_url: str,
    settings: Settings,
) -> None:
    await history(user)
    await history(other_user, source="203.0.113.9")
    assert node.pool is not None
    before = await snapshot(node.pool)
    text = await export_text(node.pool)
    assert len(text.splitlines()) == len(before["events"])

    target = LogNode(second_database_url, settings)
    await target.start()
    try:
        assert target.pool is not None
        report = await import_log(target.store, io.StringIO(text), batch_size=5)
        after = await snapshot(target.pool)
        checkpoints = await target.pool.fetch("SELECT name, position FROM projection_checkpoints")
    finally:
        await target.stop()

    assert report.ok and report.load.events == len(before["events"])
    assert after == before
    assert bytes(after["head"][1]).hex() == report.chain.head_hash == report.load.head_hash
    assert {r["name"] for r in checkpoints} == {p.name for p in registry.ALL}
    assert {r["position"] for r in checkpoints} == {before["head"][0]}


async def test_every_exported_line_carries_each_column_with_exact_microseconds(
    node: LogNode, user: Any, history: Callable[..., Any]
) -> None:
    await history(user)
    assert node.pool is not None
    lines = [json.loads(line) for line in (await export_text(node.pool)).splitlines()]
    row = await node.pool.fetchrow("SELECT recorded_at, hash FROM events WHERE position = 1")

    assert [line["position"] for line in lines] == list(range(1, len(lines) + 1))
    assert set(lines[0]) == {c.strip() for c in EVENT_COLUMNS.split(",")}
    assert lines[0]["recorded_at"].endswith("+00:00") and "." in lines[0]["recorded_at"]
    assert lines[0]["recorded_at"][20:26] == f"{row['recorded_at'].microsecond:06d}"
    assert lines[0]["hash"] == bytes(row["hash"]).hex()


async def test_a_filtered_export_writes_exactly_the_matching_events(
    node: LogNode, user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    assert node.pool is not None
    selection = EventFilter(project_id=made.finished_project, types=("job.*",))
    lines = [json.loads(line) for line in (await export_text(node.pool, selection)).splitlines()]

    expected = [
        e.position
        for e in await node.store.read_all(0, 10_000)
        if e.project_id == made.finished_project and e.type.startswith("job.")
    ]
    assert [line["position"] for line in lines] == expected and expected


async def test_an_import_into_a_store_that_has_events_is_refused_and_changes_nothing(
    node: LogNode, user: Any, other_user: Any, history: Callable[..., Any], second_database_url: str
) -> None:
    await history(user)
    assert node.pool is not None
    text = await export_text(node.pool)
    # The target: another database with a history of its own.
    target = await create_pool(second_database_url, Settings(), max_size=2)
    try:
        await load(target, io.StringIO(text))
        before = await snapshot(target)
        with pytest.raises(StoreNotEmpty):
            await load(target, io.StringIO(text))
        assert await snapshot(target) == before
    finally:
        await target.close()
    before = await snapshot(node.pool)
    with pytest.raises(StoreNotEmpty):
        await import_log(node.store, io.StringIO(text))
    assert await snapshot(node.pool) == before


@pytest.mark.parametrize(
    "damage",
    ["change data", "drop a line", "swap two lines", "repeat a line", "not json"],
)
async def test_a_damaged_export_is_refused_and_leaves_the_store_empty(
    node: LogNode, user: Any, history: Callable[..., Any], second_database_url: str, damage: str
) -> None:
    await history(user)
    assert node.pool is not None
    lines = (await export_text(node.pool)).splitlines()
    middle = len(lines) // 2
    if damage == "change data":
        row = json.loads(lines[middle])
        row["data"]["tampered"] = True
        lines[middle] = json.dumps(row)
    elif damage == "drop a line":
        del lines[middle]
    elif damage == "swap two lines":
        lines[middle], lines[middle + 1] = lines[middle + 1], lines[middle]
    elif damage == "repeat a line":
        lines.insert(middle, lines[middle])
    else:
        lines[middle] = lines[middle][:-5]

    target = await create_pool(second_database_url, Settings(), max_size=2)
    try:
        before = await snapshot(target)
        with pytest.raises(InvalidExport) as refused:
            await load(target, io.StringIO("\n".join(lines)), batch_size=3)
        bad_line = middle + 2 if damage == "repeat a line" else middle + 1
        assert refused.value.details["line"] == bad_line
        assert await snapshot(target) == before
        assert (await verify_chain(target)).verified_head == 0
    finally:
        await target.close()


async def test_the_cli_exports_to_a_file_and_imports_it_into_another_database(
    node: LogNode,
    user: Any,
    make_caller: Callable[..., Any],
    history: Callable[..., Any],
    database_url: str,
    second_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await make_caller("user", username="erin", password="correct horse battery")
    await history(user)
    assert node.pool is not None
    parser = argparse.ArgumentParser()
    events_io.add_subcommands(parser.add_subparsers(dest="action"))
    exported = tmp_path / "log.ndjson"

    monkeypatch.setenv("HELIX_DATABASE_URL", database_url)
    args = parser.parse_args(
        ["export", "-o", str(exported), "--page-size", "4", "--progress-every", "5"]
    )
    assert await args.handler(args) == 0
    monkeypatch.setenv("HELIX_DATABASE_URL", second_database_url)
    args = parser.parse_args(["import", str(exported), "--batch-size", "4"])
    assert await args.handler(args) == 0
    again = parser.parse_args(["import", str(exported)])
    assert await again.handler(again) == 1

    err = capsys.readouterr().err
    lines = exported.read_text().splitlines()
    protected = [line for line in lines if line.startswith('{"protected"')]
    count = len(lines) - len(protected)
    assert protected and "credentials in its protected section" in err
    assert exported.stat().st_mode & 0o777 == 0o600  # it holds password hashes and secrets
    assert f"exported {count} events" in err
    # Plain progress lines, since stderr is not a terminal.
    progress = [line for line in err.splitlines() if line.startswith("export: ")]
    assert len(progress) >= count // 5 and progress[-1].startswith(f"export: done, {count}/")
    assert f"imported {count} events" in err and "chain verified" in err
    assert "already holds events" in err
    target = await create_pool(second_database_url, Settings(), max_size=1)
    try:
        store = EventStore(target, default_registry())
        assert await store.head() == count
        assert (await verify_chain(target)).ok
    finally:
        await target.close()
    assert os.listdir(tmp_path) == ["log.ndjson"]  # no partial file left behind


async def _everything(pool: asyncpg.Pool) -> dict[str, Any]:
    """Every read model, and every credential the log does not hold."""
    taken = await snapshot(pool)
    for table in credentials.TABLES:
        rows = await pool.fetch(f"SELECT * FROM {table.name}")
        taken[table.name] = sorted((dict(r) for r in rows), key=repr)
    return taken


async def test_everything_users_made_survives_export_and_import_with_every_login(
    node: LogNode,
    admin: Any,
    user: Any,
    worker: Any,
    make_client: Callable[..., Any],
    history: Callable[..., Any],
    second_database_url: str,
    settings: Settings,
    aiohttp_client: Callable[..., Any],
) -> None:
    source = await make_client(webhook_allowed_networks=("127.0.0.0/8",))
    made = await source.post(
        "/api/v1/users",
        json={"username": "carol", "password": "correct horse battery", "role": "user"},
        headers=admin.headers,
    )
    assert made.status == 201, await made.text()
    login = await source.post(
        "/api/v1/auth/login", json={"username": "carol", "password": "correct horse battery"}
    )
    assert login.status == 200
    token = (await login.json())["token"]
    carol = {"Authorization": f"Bearer {token}"}
    key = await source.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=carol)
    assert key.status == 201
    carol_key = (await key.json())["key"]
    revoked = await source.post("/api/v1/auth/api-keys", json={"name": "old"}, headers=carol)
    old_key = await revoked.json()
    assert (await source.delete(f"/api/v1/auth/api-keys/{old_key['id']}", headers=carol)).ok
    endpoint = await source.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["job.*"]},
        headers=carol,
    )
    assert endpoint.status == 201, await endpoint.text()
    endpoint_id = (await endpoint.json())["id"]
    rotated = await source.post(f"/api/v1/webhooks/{endpoint_id}/rotate-secret", headers=carol)
    assert rotated.status == 200
    registered = await source.post(
        "/api/v1/workers/register",
        json={"name": "w", "hostname": "builder", "capabilities": ["shell"]},
        headers=worker.headers,
    )
    assert registered.status == 201
    await history(user)
    assert node.pool is not None
    await settled(node.pool)
    before = await _everything(node.pool)
    assert before["webhook_secrets"][0]["previous_secret"] is not None
    assert len(before["user_passwords"]) == 1
    assert "builder" in {w["hostname"] for w in before["workers"]}

    out = io.StringIO()
    exported = await export_events(node.pool, out, with_credentials=True)
    assert exported.credentials == len(before["user_passwords"]) + len(
        before["webhook_secrets"]
    ) + len(before["helix_secrets"])
    target = LogNode(second_database_url, settings)
    await target.start()
    try:
        assert target.pool is not None
        report = await import_log(target.store, io.StringIO(out.getvalue()))
        after = await _everything(target.pool)
        client = await aiohttp_client(create_app(target, settings))
        again = await client.post(
            "/api/v1/auth/login", json={"username": "carol", "password": "correct horse battery"}
        )
        wrong = await client.post(
            "/api/v1/auth/login", json={"username": "carol", "password": "not her password"}
        )
        by_key = await client.get("/api/v1/users/me", headers={"X-API-Key": carol_key})
        by_old_key = await client.get("/api/v1/users/me", headers={"X-API-Key": old_key["key"]})
        by_token = await client.get("/api/v1/users/me", headers=carol)
        by_admin = await client.get("/api/v1/users/me", headers=admin.headers)
    finally:
        await target.stop()

    assert report.ok and report.load.credentials == exported.credentials
    # The logins of the imported users were recorded there, after the snapshot.
    assert after == before
    assert again.status == 200 and wrong.status == 401
    assert by_key.status == 200 and (await by_key.json())["username"] == "carol"
    assert by_old_key.status == 401
    assert by_token.status == 200  # a token the old server signed: the JWT secret came along
    assert by_admin.status == 200


async def test_an_export_without_credentials_imports_but_restores_no_login(
    node: LogNode,
    admin: Any,
    client: Any,
    second_database_url: str,
    settings: Settings,
) -> None:
    made = await client.post(
        "/api/v1/users",
        json={"username": "dave", "password": "correct horse battery"},
        headers=admin.headers,
    )
    assert made.status == 201
    assert node.pool is not None
    await settled(node.pool)
    out = io.StringIO()
    exported = await export_events(node.pool, out)
    assert exported.credentials == 0
    assert '"protected"' not in out.getvalue()
    target = await create_pool(second_database_url, settings, max_size=2)
    try:
        store = EventStore(target, default_registry())
        report = await import_log(store, io.StringIO(out.getvalue()))
        users = await target.fetchval("SELECT count(*) FROM users WHERE username = 'dave'")
        passwords = await target.fetchval("SELECT count(*) FROM user_passwords")
    finally:
        await target.close()
    assert report.ok and users == 1 and passwords == 0


@pytest.mark.parametrize(
    "line",
    [
        {
            "protected": {
                "table": "user_passwords",
                "row": {"user_id": str(uuid.uuid4()), "password_hash": "x"},
            }
        },
        {"protected": {"table": "pg_authid", "row": {"rolname": "postgres"}}},
        {"protected": {"table": "user_passwords"}},
        {"protected": {"table": "helix_secrets", "row": {"name": "x", "nope": 1}}},
    ],
    ids=["password-of-no-user", "unknown-table", "no-row", "unknown-column"],
)
async def test_a_protected_line_that_is_not_a_credential_of_the_log_refuses_the_import(
    node: LogNode,
    user: Any,
    history: Callable[..., Any],
    second_database_url: str,
    settings: Settings,
    line: dict[str, Any],
) -> None:
    await history(user)
    assert node.pool is not None
    text = await export_text(node.pool) + json.dumps(line) + "\n"
    target = await create_pool(second_database_url, settings, max_size=2)
    try:
        with pytest.raises(InvalidExport):
            await import_log(EventStore(target, default_registry()), io.StringIO(text))
        events = await target.fetchval("SELECT count(*) FROM events")
        secrets = await target.fetchval("SELECT count(*) FROM helix_secrets WHERE name = 'x'")
    finally:
        await target.close()
    assert events == 0 and secrets == 0
