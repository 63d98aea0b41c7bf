"""Phase secrets against the real server: a value marked secret is sealed before any event is
written, shown redacted everywhere (views, history, time travel, the audit log, streams,
exports), given in plaintext only to the worker that claims the job, masked out of what that
worker reports, and a sealed value that does not open here fails closed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from helix.auth.sealing import key_id, new_key, parse_keys
from helix.bootstrap import LogNode
from helix.client.sse import Parser
from tests.support import settled

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]
SECRET = "s3cr3t-Value-4f9a1c"
OTHER_SECRET = "another-s3cr3t-77e2"


def plan(env: dict[str, Any], name: str = "build") -> list[dict[str, Any]]:
    return [{"name": name, "command": ["sh", "-c", "echo $TOKEN"], "env": env}]


async def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json() if status != 204 else None


async def create(client: Client, who: Any, env: dict[str, Any]) -> dict[str, Any]:
    body = {"name": "with secrets", "phases": plan(env)}
    created: dict[str, Any] = await ok(
        await client.post("/api/v1/projects", json=body, headers=who.headers), 201
    )
    return created


async def execute(client: Client, who: Any, project_id: str) -> str:
    await ok(await client.post(f"/api/v1/projects/{project_id}/ready", headers=who.headers))
    run = await ok(
        await client.post(f"/api/v1/projects/{project_id}/execute", headers=who.headers), 202
    )
    return str(run["job_id"])


async def register(client: Client, who: Any) -> str:
    body = {"hostname": "box", "capabilities": ["shell"]}
    resp = await client.post("/api/v1/workers/register", json=body, headers=who.headers)
    return str((await ok(resp, 201))["worker_id"])


async def claim(client: Client, who: Any, worker_id: str) -> Any:
    """The claim's answer, or None when there was no job to take (204)."""
    resp = await client.post(f"/api/v1/workers/{worker_id}/claim", headers=who.headers)
    return None if resp.status == 204 else await ok(resp)


async def stored_anywhere(pool: asyncpg.Pool, text: str) -> list[str]:
    """The tables where `text` appears in some row, as text or (in bytea columns) as hex."""
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    found = []
    for row in tables:
        hits = await pool.fetchval(
            f'SELECT count(*) FROM "{row["tablename"]}" t WHERE strpos(t::text, $1) > 0 '
            "OR strpos(t::text, encode(convert_to($1, 'UTF8'), 'hex')) > 0",
            text,
        )
        if hits:
            found.append(row["tablename"])
    return found


def sealed_token(shown: dict[str, Any], name: str = "TOKEN") -> str:
    value = shown["phases"][0]["env"][name]
    assert set(value) == {"sealed", "redacted"} and value["redacted"] is True, value
    return str(value["sealed"])


def sealed_with(shown: dict[str, Any], key: str) -> bool:
    """Whether the project's TOKEN was sealed with `key` (its id is the sealed value's)."""
    return sealed_token(shown).split(".")[1] == key_id(parse_keys([key])[0])


async def queued_with_secret(client: Client, who: Any) -> tuple[dict[str, Any], str]:
    """A project whose phase has the secret TOKEN, and its queued job."""
    created = await create(client, who, {"TOKEN": {"secret": SECRET}})
    return created, await execute(client, who, created["id"])


async def test_a_secret_env_value_is_sealed_before_the_log_and_shown_redacted_in_every_view(
    client: Client, node: LogNode, user: Any, admin: Any, auditor: Any
) -> None:
    assert node.pool is not None
    created = await create(client, user, {"MODE": "fast", "TOKEN": {"secret": SECRET}})
    project_id = created["id"]
    head = await settled(node)

    data = [r["data"] for r in await node.pool.fetch("SELECT data::text AS data FROM events")]
    assert data and not any(SECRET in d for d in data)
    assert await stored_anywhere(node.pool, SECRET) == []
    token = sealed_token(created)
    assert created["phases"][0]["env"]["MODE"] == "fast"
    assert token.startswith("v1.") and SECRET not in token

    views = {
        "get": f"/api/v1/projects/{project_id}",
        "list": "/api/v1/projects",
        "history": f"/api/v1/projects/{project_id}/history",
        "as_of position": f"/api/v1/projects/{project_id}?as_of={head}",
        "as_of time": f"/api/v1/projects/{project_id}?as_of={datetime.now(UTC).isoformat()}",
    }
    for what, url in views.items():
        resp = await client.get(url.replace("+", "%2B"), headers=user.headers)
        text = await resp.text()
        assert resp.status == 200, (what, text)
        assert SECRET not in text and token in text, what
    shown = await ok(await client.get(views["as_of position"], headers=user.headers))
    assert sealed_token(shown) == token
    for who in (admin, auditor):
        resp = await client.get(f"/api/v1/events?project_id={project_id}", headers=who.headers)
        text = await resp.text()
        assert resp.status == 200 and SECRET not in text and token in text, text


async def test_a_project_stream_shows_the_sealed_form_and_never_the_secret(
    client: Client, node: LogNode, user: Any
) -> None:
    created = await create(client, user, {"TOKEN": {"secret": SECRET}})
    resp = await client.get(
        f"/api/v1/projects/{created['id']}/stream?after=0", headers=user.headers
    )
    assert resp.status == 200
    parser, raw = Parser(), []
    async with asyncio.timeout(20):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\r\n")
            raw.append(line)
            message = parser.feed_line(line)
            if message is not None and message.event == "project.phases_planned":
                break
    resp.close()
    env = json.loads(message.data)["data"]["phases"][0]["env"]
    assert env["TOKEN"] == {"sealed": sealed_token(created), "redacted": True}
    assert not any(SECRET in line for line in raw)


async def test_the_exported_log_carries_the_sealed_secret_and_never_its_plaintext(
    client: Client, node: LogNode, user: Any, database_url: str
) -> None:
    created = await create(client, user, {"TOKEN": {"secret": SECRET}})
    await settled(node)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    env["HELIX_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "helix.cli", "events", "export",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    exported = out.decode()
    assert exported.count("\n") >= 2
    assert SECRET not in exported and sealed_token(created) in exported


async def test_only_the_claiming_worker_gets_the_plaintext_and_reports_are_masked(
    client: Client, node: LogNode, user: Any, admin: Any, worker: Any
) -> None:
    assert node.pool is not None
    created = await create(client, user, {"MODE": "fast", "TOKEN": {"secret": SECRET}})
    job_id = await execute(client, user, created["id"])
    worker_id = await register(client, worker)

    claimed = await claim(client, worker, worker_id)
    [phase] = claimed["phases"]
    assert phase["env"] == {"MODE": "fast", "TOKEN": SECRET}
    assert phase["secret_env"] == ["TOKEN"]
    token = claimed["lease"]["fencing_token"]
    reports = [
        {"type": "phase_started", "phase": "build"},
        {"type": "output", "phase": "build", "stream": "stdout",
         "lines": [f"token={SECRET}", "plain line", f"{SECRET}{SECRET}"]},
        {"type": "phase_failed", "phase": "build", "exit_code": 1,
         "error": f"failed with {SECRET}", "stderr_tail": [f"tail {SECRET}"]},
        {"type": "job_failed", "error": f"job failed: {SECRET}"},
    ]  # fmt: skip
    resp = await client.post(
        f"/api/v1/jobs/{job_id}/reports",
        json={"fencing_token": token, "reports": reports},
        headers=worker.headers,
    )
    await ok(resp)

    output = await ok(await client.get(f"/api/v1/jobs/{job_id}/output", headers=user.headers))
    assert [line["line"] for line in output["items"]] == ["token=***", "plain line", "******"]
    for who in (user, admin):
        for url in (f"/api/v1/jobs/{job_id}", f"/api/v1/events?stream_id=job-{job_id}"):
            text = await (await client.get(url, headers=who.headers)).text()
            assert SECRET not in text, url
    job = await ok(await client.get(f"/api/v1/jobs/{job_id}", headers=user.headers))
    assert job["status"] == "failed" and "***" in job["error"]
    assert await stored_anywhere(node.pool, SECRET) == []


async def test_a_claim_with_an_idempotency_key_leaves_no_copy_of_its_secrets_behind(
    client: Client, node: LogNode, user: Any, worker: Any
) -> None:
    assert node.pool is not None
    _, job_id = await queued_with_secret(client, user)
    worker_id = await register(client, worker)
    resp = await client.post(
        f"/api/v1/workers/{worker_id}/claim",
        headers={**worker.headers, "Idempotency-Key": "claim-1"},
    )
    claimed = await ok(resp)
    assert claimed["job"]["id"] == job_id and claimed["phases"][0]["env"]["TOKEN"] == SECRET
    assert await stored_anywhere(node.pool, SECRET) == []
    assert resp.headers["Cache-Control"] == "no-store"


async def test_a_sealed_value_sent_back_as_shown_keeps_the_secret_without_a_new_event(
    client: Client, node: LogNode, user: Any, worker: Any
) -> None:
    assert node.pool is not None
    created = await create(client, user, {"TOKEN": {"secret": SECRET}})
    project_id = created["id"]
    before = await node.pool.fetchval("SELECT count(*) FROM events")

    body = {"phases": created["phases"]}
    resp = await client.patch(f"/api/v1/projects/{project_id}", json=body, headers=user.headers)
    updated = await ok(resp)
    assert sealed_token(updated) == sealed_token(created)
    assert await node.pool.fetchval("SELECT count(*) FROM events") == before

    job_id = await execute(client, user, project_id)
    claimed = await claim(client, worker, await register(client, worker))
    assert claimed["job"]["id"] == job_id
    assert claimed["phases"][0]["env"]["TOKEN"] == SECRET


async def test_a_sealed_value_moved_to_another_project_or_variable_or_altered_is_refused(
    client: Client, node: LogNode, user: Any, other_user: Any
) -> None:
    assert node.pool is not None
    token = sealed_token(await create(client, user, {"TOKEN": {"secret": SECRET}}))
    own = await create(client, user, {"MODE": "x"})
    theirs = await create(client, other_user, {"MODE": "x"})
    before = await node.pool.fetchval("SELECT count(*) FROM events")
    kid, nonce, ciphertext = token.split(".")[1:]
    flipped = ciphertext[:-2] + ("A" if ciphertext[-2] != "A" else "B") + ciphertext[-1]
    attempts = [
        (own, user, {"TOKEN": {"sealed": token}}, "another project"),
        (theirs, other_user, {"TOKEN": {"sealed": token}}, "another project"),
        (own, user, {"OTHER": {"sealed": token}}, "another project or variable"),
        (own, user, {"TOKEN": {"sealed": f"v1.{kid}.{nonce}.{flipped}"}}, "altered"),
        (own, user, {"TOKEN": {"sealed": f"v1.{'0' * 16}.{nonce}.{ciphertext}"}}, "does not hold"),
        (own, user, {"TOKEN": {"sealed": "not a sealed value"}}, "not a sealed secret"),
    ]
    for project, who, env, expected in attempts:
        resp = await client.patch(
            f"/api/v1/projects/{project['id']}", json={"phases": plan(env)}, headers=who.headers
        )
        assert resp.status == 422, await resp.text()
        body = await resp.json()
        assert body["error"]["code"] == "VALIDATION_ERROR" and body["request_id"]
        assert expected in body["error"]["message"], body
    assert await node.pool.fetchval("SELECT count(*) FROM events") == before


async def test_bad_secret_shapes_are_422_in_the_envelope_and_never_echo_the_value(
    client: Client, node: LogNode, user: Any
) -> None:
    assert node.pool is not None
    before = await node.pool.fetchval("SELECT count(*) FROM events")
    long_secret = "L0ngS3cr3t" * 2000
    bad: list[Any] = [
        {"TOKEN": {"secret": long_secret}},
        {"TOKEN": {"secret": ""}},
        {"TOKEN": {"secret": "   "}},
        {"TOKEN": {"secret": SECRET, "sealed": "v1.x.y.z"}},
        {"TOKEN": {}},
        {"TOKEN": {"secret": 42}},
        {"TOKEN": {"value": SECRET}},
        {"NOT VALID": {"secret": SECRET}},
        {"TOKEN": ["list"]},
        {f"T{n}": {"secret": f"{SECRET}-{n}"} for n in range(101)},
    ]
    for env in bad:
        resp = await client.post(
            "/api/v1/projects", json={"name": "p", "phases": plan(env)}, headers=user.headers
        )
        text = await resp.text()
        assert resp.status == 422, (env, text)
        assert json.loads(text)["error"]["code"] == "VALIDATION_ERROR"
        assert SECRET not in text and "L0ngS3cr3t" not in text, text
    # A lone surrogate cannot be encrypted as UTF-8: refused, not a 500.
    raw = '{"name": "p", "phases": [{"name": "b", "env": {"T": {"secret": "ab\\ud800cd"}}}]}'
    resp = await client.post(
        "/api/v1/projects",
        data=raw,
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert 400 <= resp.status < 500, await resp.text()
    assert await node.pool.fetchval("SELECT count(*) FROM events") == before


async def test_a_job_whose_secret_was_sealed_with_an_unknown_key_fails_at_its_claim(
    make_client: MakeClient, node: LogNode, user: Any, worker: Any
) -> None:
    first, second = new_key(), new_key()
    created, job_id = await queued_with_secret(await make_client(secrets_keys=(first,)), user)
    assert sealed_with(created, first)

    elsewhere = await make_client(secrets_keys=(second,))
    worker_id = await register(elsewhere, worker)
    assert await claim(elsewhere, worker, worker_id) is None
    job = await ok(await elsewhere.get(f"/api/v1/jobs/{job_id}", headers=user.headers))
    assert job["status"] == "failed"
    assert "does not hold" in job["error"] and "HELIX_SECRETS_KEY" in job["error"]
    assert SECRET not in json.dumps(job)


async def test_a_rotated_key_ring_seals_with_the_new_key_and_still_opens_the_old_one(
    make_client: MakeClient, node: LogNode, user: Any, worker: Any
) -> None:
    old, new = new_key(), new_key()
    _, job_id = await queued_with_secret(await make_client(secrets_keys=(old,)), user)

    rotated = await make_client(secrets_keys=(new, old))
    claimed = await claim(rotated, worker, await register(rotated, worker))
    assert claimed["job"]["id"] == job_id
    assert claimed["phases"][0]["env"]["TOKEN"] == SECRET
    again = await create(rotated, user, {"TOKEN": {"secret": OTHER_SECRET}})
    assert sealed_with(again, new)


async def test_without_a_configured_key_one_is_generated_once_and_shared_through_the_database(
    make_client: MakeClient, node: LogNode, user: Any, worker: Any
) -> None:
    assert node.pool is not None
    created, job_id = await queued_with_secret(await make_client(), user)
    stored = await node.pool.fetchval(
        "SELECT value FROM helix_secrets WHERE name = 'phase_secrets_key'"
    )
    assert sealed_with(created, stored)

    other_node = await make_client()
    claimed = await claim(other_node, worker, await register(other_node, worker))
    assert claimed["job"]["id"] == job_id
    assert claimed["phases"][0]["env"]["TOKEN"] == SECRET
