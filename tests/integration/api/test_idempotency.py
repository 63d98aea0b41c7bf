"""`Idempotency-Key` on POSTs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.api.idempotency import COMMITTED
from helix.auth.sealing import new_key
from helix.bootstrap import LogNode
from helix.services.idempotency import SEALED

MESSAGE = {"content": "ship it"}


async def new_project(client: TestClient[Any, Any], who: Any) -> str:
    resp = await client.post("/api/v1/projects", json={"name": "p"}, headers=who.headers)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def new_thread(
    client: TestClient[Any, Any], who: Any, key: str
) -> tuple[str, str, dict[str, str]]:
    """A new project of `who`, the path its messages are posted to, and headers with `key`."""
    project_id = await new_project(client, who)
    path = f"/api/v1/projects/{project_id}/messages"
    return project_id, path, {**who.headers, "Idempotency-Key": key}


async def messages_of(node: LogNode, project_id: str) -> int:
    assert node.pool is not None
    return int(
        await node.pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'project.message_posted'",
            f"project-{project_id}",
        )
    )


async def test_the_same_key_and_body_replay_the_stored_response_without_a_second_effect(
    client: TestClient[Any, Any], admin: Any, node: LogNode
) -> None:
    headers = {**admin.headers, "Idempotency-Key": "create-dave-1"}
    body = {"username": "dave", "role": "worker"}

    first = await client.post("/api/v1/users", json=body, headers=headers)
    second = await client.post("/api/v1/users", json=body, headers=headers)

    assert (first.status, second.status) == (201, 201)
    assert await first.json() == await second.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert node.pool is not None
    assert await node.pool.fetchval("SELECT count(*) FROM users WHERE username = 'dave'") == 1


async def test_the_same_key_with_another_body_is_a_conflict(
    client: TestClient[Any, Any], admin: Any
) -> None:
    headers = {**admin.headers, "Idempotency-Key": "k1"}
    await client.post("/api/v1/users", json={"username": "dave"}, headers=headers)

    resp = await client.post("/api/v1/users", json={"username": "erin"}, headers=headers)

    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "CONFLICT"


async def test_keys_are_scoped_per_principal(
    client: TestClient[Any, Any], user: Any, other_user: Any
) -> None:
    one = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "ci"},
        headers={**user.headers, "Idempotency-Key": "same"},
    )
    two = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "ci"},
        headers={**other_user.headers, "Idempotency-Key": "same"},
    )

    assert (one.status, two.status) == (201, 201)
    assert (await one.json())["key"] != (await two.json())["key"]
    assert "Idempotent-Replayed" not in two.headers


async def test_a_failed_request_releases_its_key_so_a_retry_runs_again(
    client: TestClient[Any, Any], admin: Any
) -> None:
    headers = {**admin.headers, "Idempotency-Key": "retry-me"}
    bad = await client.post("/api/v1/users", json={"username": "no spaces"}, headers=headers)
    assert bad.status == 422

    good = await client.post("/api/v1/users", json={"username": "no spaces"}, headers=headers)

    assert good.status == 422
    assert "Idempotent-Replayed" not in good.headers


async def test_an_expired_key_runs_the_request_again(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    headers = {**user.headers, "Idempotency-Key": "old"}
    first = await client.post("/api/v1/auth/api-keys", json={}, headers=headers)
    assert node.pool is not None
    await node.pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")

    again = await client.post("/api/v1/auth/api-keys", json={}, headers=headers)

    assert again.status == 201 and "Idempotent-Replayed" not in again.headers
    assert (await again.json())["id"] != (await first.json())["id"]


async def test_an_unreasonable_key_is_refused(client: TestClient[Any, Any], user: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/api-keys", json={}, headers={**user.headers, "Idempotency-Key": "k" * 300}
    )

    assert resp.status == 400


@pytest.mark.parametrize("loss", ["error", "dropped connection"])
async def test_a_command_whose_answer_was_lost_after_commit_is_replayed_not_run_again(
    app: web.Application, aiohttp_client: Any, user: Any, node: LogNode, loss: str
) -> None:
    losses = [loss]

    async def lose_the_answer_once(request: web.Request) -> None:
        if not losses:
            return
        losses.pop()
        if loss == "dropped connection":
            assert request.transport is not None
            request.transport.abort()
        raise RuntimeError("the answer was lost after the commit")

    app[COMMITTED] = lose_the_answer_once
    client = await aiohttp_client(app)
    project_id, path, headers = await new_thread(client, user, "post-once")

    try:
        lost = (await client.post(path, json=MESSAGE, headers=headers)).status
    except aiohttp.ClientError:
        lost = None
    retry = await client.post(path, json=MESSAGE, headers=headers)

    assert lost == (500 if loss == "error" else None)
    assert retry.status == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert (await retry.json())["content"] == "ship it"
    assert await messages_of(node, project_id) == 1


async def test_a_key_whose_request_lost_its_transaction_is_free_at_once(
    app: web.Application, aiohttp_client: Any, user: Any, node: LogNode
) -> None:
    paused, resume = asyncio.Event(), asyncio.Event()

    @web.middleware
    async def pause_the_first_after_its_command(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        response = await handler(request)
        if request.headers.get("Idempotency-Key") == "orphan" and not paused.is_set():
            paused.set()
            await resume.wait()
        return response

    app.middlewares.append(pause_the_first_after_its_command)
    client = await aiohttp_client(app)
    project_id, path, headers = await new_thread(client, user, "orphan")
    assert node.pool is not None

    first = asyncio.create_task(client.post(path, json=MESSAGE, headers=headers))
    await paused.wait()
    # The first request's node dies: the database ends the session that holds its key.
    holders = await node.pool.fetch(
        "SELECT DISTINCT pid FROM pg_locks WHERE relation = 'idempotency_keys'::regclass"
        " AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()"
    )
    for holder in holders:
        await node.pool.execute("SELECT pg_terminate_backend($1)", holder["pid"])
    retry = await client.post(path, json=MESSAGE, headers=headers)
    resume.set()
    await first

    assert retry.status == 201 and "Idempotent-Replayed" not in retry.headers
    assert await messages_of(node, project_id) == 1
    assert len(holders) == 1


async def test_a_request_that_fails_after_its_command_ran_leaves_no_effect_and_a_free_key(
    app: web.Application, aiohttp_client: Any, user: Any, node: LogNode
) -> None:
    failures = [RuntimeError("rendering the answer failed")]

    @web.middleware
    async def fail_once_after_the_handler(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        response = await handler(request)
        if failures and request.method == "POST" and "Idempotency-Key" in request.headers:
            raise failures.pop()
        return response

    app.middlewares.append(fail_once_after_the_handler)  # innermost: inside the idempotency one
    client = await aiohttp_client(app)
    project_id, path, headers = await new_thread(client, user, "render-fails")

    failed = await client.post(path, json=MESSAGE, headers=headers)
    assert failed.status == 500
    assert await messages_of(node, project_id) == 0

    retry = await client.post(path, json=MESSAGE, headers=headers)

    assert retry.status == 201 and "Idempotent-Replayed" not in retry.headers
    assert await messages_of(node, project_id) == 1


async def test_the_same_key_with_another_body_is_a_conflict_and_appends_nothing(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    _, path, headers = await new_thread(client, user, "one-message")
    assert (await client.post(path, json=MESSAGE, headers=headers)).status == 201
    assert node.pool is not None
    before = await node.pool.fetchval("SELECT count(*) FROM events")

    resp = await client.post(path, json={"content": "something else"}, headers=headers)

    assert resp.status == 409
    body = await resp.json()
    assert body["error"]["code"] == "CONFLICT"
    assert body["error"]["details"]["idempotency_key"] == "one-message"
    assert await node.pool.fetchval("SELECT count(*) FROM events") == before


async def test_a_refused_command_stores_nothing_so_a_corrected_retry_with_its_key_runs(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    project_id, path, headers = await new_thread(client, user, "fix-and-retry")

    refused = await client.post(path, json={"content": "   "}, headers=headers)
    assert refused.status == 422
    assert node.pool is not None
    assert await node.pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0

    corrected = await client.post(path, json=MESSAGE, headers=headers)
    stale = await client.post(path, json={"content": "   "}, headers=headers)

    assert corrected.status == 201 and "Idempotent-Replayed" not in corrected.headers
    assert stale.status == 409  # the key now holds the corrected request's answer
    assert await messages_of(node, project_id) == 1


async def test_concurrent_requests_with_one_key_have_one_effect_and_one_answer(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    project_id, path, headers = await new_thread(client, user, "many-at-once")

    answers = await asyncio.gather(
        *(client.post(path, json=MESSAGE, headers=headers) for _ in range(6))
    )

    assert [a.status for a in answers] == [201] * 6
    bodies = [await a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies)
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert await messages_of(node, project_id) == 1


# Batches of requests sent at the same time, each a (key, body) pair from a few of each.
batches = st.lists(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=3),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=batches)
async def test_any_mix_of_retries_and_races_runs_each_key_once_and_answers_it_one_way(
    client: TestClient[Any, Any], user: Any, node: LogNode, program: list[list[tuple[int, int]]]
) -> None:
    run = uuid.uuid4().hex
    project_id = await new_project(client, user)
    path = f"/api/v1/projects/{project_id}/messages"
    answers: dict[str, list[tuple[int, str, bool]]] = {}
    for batch in program:
        sent = [(f"{run}-k{k}", f"{run}-b{b}") for k, b in batch]
        replies = await asyncio.gather(
            *(
                client.post(
                    path, json={"content": body}, headers={**user.headers, "Idempotency-Key": key}
                )
                for key, body in sent
            )
        )
        for (key, body), reply in zip(sent, replies, strict=True):
            replayed = reply.headers.get("Idempotent-Replayed") == "true"
            answers.setdefault(key, []).append((reply.status, body, replayed))

    assert node.pool is not None
    posted = await node.pool.fetch(
        "SELECT data->>'content' AS content FROM events"
        " WHERE stream_id = $1 AND type = 'project.message_posted'",
        f"project-{project_id}",
    )
    assert len(posted) == len(answers)  # one effect per key
    for key, replies in answers.items():
        winners = [body for status, body, replayed in replies if status == 201 and not replayed]
        assert len(winners) == 1, replies
        assert {"content": winners[0]} in [dict(p) for p in posted]
        for status, body, _ in replies:
            assert status == (201 if body == winners[0] else 409), (key, replies)


async def test_concurrent_requests_with_one_key_create_one_api_key(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    headers = {**user.headers, "Idempotency-Key": "one-key-please"}

    answers = await asyncio.gather(
        *(
            client.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=headers)
            for _ in range(6)
        )
    )

    assert [a.status for a in answers] == [201] * 6
    bodies = [await a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies)  # the one key, shown to every answer
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert node.pool is not None
    named = await node.pool.fetchval(
        "SELECT count(*) FROM api_keys WHERE user_id = $1 AND name = 'ci'", uuid.UUID(user.user_id)
    )
    created = await node.pool.fetchval(
        "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'api_key.created'",
        f"user-{user.user_id}",
    )
    assert (named, created) == (1, 2)  # the fixture's key and this one


async def stored_body(node: LogNode, key: str) -> bytes:
    assert node.pool is not None
    body = await node.pool.fetchval("SELECT body FROM idempotency_keys WHERE key = $1", key)
    assert isinstance(body, bytes)
    return body


def encodings(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]


async def credential_request(
    client: TestClient[Any, Any], make_caller: Any, shows: str
) -> tuple[str, dict[str, Any], dict[str, str], str]:
    """A POST whose answer shows a credential once: its path, body, caller headers and the
    answer's field that holds the credential."""
    if shows == "api key":
        owner = await make_caller("user")
        return "/api/v1/auth/api-keys", {"name": "ci"}, owner.headers, "key"
    if shows == "login token":
        await make_caller("user", username="carol", password="correct horse")
        return "/api/v1/auth/login", {"username": "carol", "password": "correct horse"}, {}, "token"
    owner = await make_caller("user")
    hook = {"url": "https://example.com/hook"}
    if shows == "webhook secret":
        return "/api/v1/webhooks", hook, owner.headers, "secret"
    made = await client.post("/api/v1/webhooks", json=hook, headers=owner.headers)
    assert made.status == 201, await made.text()
    return (
        f"/api/v1/webhooks/{(await made.json())['id']}/rotate-secret",
        {},
        owner.headers,
        "secret",
    )


@pytest.mark.parametrize("shows", ["api key", "login token", "webhook secret", "rotated secret"])
async def test_a_stored_response_holds_no_trace_of_the_credential_it_showed_and_replays_it(
    client: TestClient[Any, Any], make_caller: Any, node: LogNode, shows: str
) -> None:
    path, body, who, field = await credential_request(client, make_caller, shows)
    headers = {**who, "Idempotency-Key": "show-once"}

    first = await client.post(path, json=body, headers=headers)
    assert first.status in (200, 201), await first.text()
    secret = (await first.json())[field]
    stored = await stored_body(node, "show-once")
    replay = await client.post(path, json=body, headers=headers)

    assert stored.startswith(SEALED)
    for encoded in encodings(secret):
        assert encoded not in stored
    assert replay.status == first.status and replay.headers["Idempotent-Replayed"] == "true"
    assert (await replay.json())[field] == secret


async def test_a_sealed_body_moved_onto_another_keys_record_is_refused_without_a_trace(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    made = {}
    for key in ("mine", "theirs"):
        headers = {**user.headers, "Idempotency-Key": key}
        resp = await client.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=headers)
        made[key] = (await resp.json())["key"]
    assert node.pool is not None
    await node.pool.execute(
        "UPDATE idempotency_keys SET body = (SELECT body FROM idempotency_keys WHERE key = $1)"
        " WHERE key = $2",
        "theirs",
        "mine",
    )

    resp = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "ci"},
        headers={**user.headers, "Idempotency-Key": "mine"},
    )

    assert resp.status == 409
    text = await resp.text()
    error = json.loads(text)["error"]
    assert error["code"] == "CONFLICT" and "cannot be shown again" in error["message"]
    assert "another idempotency key" in error["details"]["reason"]
    assert error["details"]["idempotency_key"] == "mine"
    assert made["theirs"] not in text and made["mine"] not in text
    assert "v1." not in text  # nothing of the sealed value


async def test_a_stored_body_whose_key_left_the_ring_or_that_was_altered_is_a_clear_conflict(
    make_client: Callable[..., Awaitable[TestClient[Any, Any]]], user: Any, node: LogNode
) -> None:
    first, second = new_key(), new_key()
    sealed_with_first = await make_client(secrets_keys=(first,))
    for key in ("rotated-away", "altered"):
        headers = {**user.headers, "Idempotency-Key": key}
        resp = await sealed_with_first.post("/api/v1/auth/api-keys", json={}, headers=headers)
        assert resp.status == 201
    altered = bytearray(await stored_body(node, "altered"))
    altered[-2] = ord("A") if altered[-2] != ord("A") else ord("B")
    assert node.pool is not None
    await node.pool.execute(
        "UPDATE idempotency_keys SET body = $1 WHERE key = 'altered'", bytes(altered)
    )
    cases = [
        (await make_client(secrets_keys=(second,)), "rotated-away", "does not hold"),
        (sealed_with_first, "altered", "altered"),
    ]

    for client, key, reason in cases:
        headers = {**user.headers, "Idempotency-Key": key}
        resp = await client.post("/api/v1/auth/api-keys", json={}, headers=headers)
        assert resp.status == 409, (key, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "CONFLICT" and reason in error["details"]["reason"]


async def test_a_plaintext_record_stored_by_an_older_release_still_replays(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    project_id, path, headers = await new_thread(client, user, "from-an-older-release")
    sent = json.dumps(MESSAGE).encode()
    answer = json.dumps({"id": str(uuid.uuid4()), "content": "ship it"}).encode()
    assert node.pool is not None
    await node.pool.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, headers, body,"
        " completed_at) VALUES ($1, $2, $3, 201, $4, $5, now())",
        f"user:{user.user_id} POST {path}",
        "from-an-older-release",
        hashlib.sha256(sent).hexdigest(),
        {"Content-Type": "application/json; charset=utf-8"},
        answer,
    )

    resp = await client.post(
        path, data=sent, headers={**headers, "Content-Type": "application/json"}
    )

    assert resp.status == 201 and resp.headers["Idempotent-Replayed"] == "true"
    assert await resp.read() == answer
    assert await messages_of(node, project_id) == 0
