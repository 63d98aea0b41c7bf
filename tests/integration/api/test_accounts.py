"""Accounts against the real server: passwords, API key expiry and scopes, logout and the
revocation of every token, the login's shape, and the audit trail of all of it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.api.scopes import ROUTE_SCOPES, template
from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.domain.user.scopes import ROLE_SCOPES, SCOPES
from helix.services.unit import Writer
from tests.integration.fixtures import TEST_CALLER
from tests.integration.streams.streams_support import ended, open_sse, told_why
from tests.support import settled

Client = TestClient[Any, Any]
PASSWORD = "correct horse battery"


async def login(client: Client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    resp = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    return str(body["error"]["message"])


# --- 1. passwords ---------------------------------------------------------------------------


async def test_an_admin_sets_a_password_the_user_then_logs_in_with_and_the_event_holds_no_hash(
    client: Client, admin: Any, user: Any, node: LogNode
) -> None:
    resp = await client.put(
        f"/api/v1/users/{user.user_id}/password", json={"new": PASSWORD}, headers=admin.headers
    )
    assert resp.status == 204, await resp.text()

    body = await login(client, "alice")

    assert body["user"]["id"] == user.user_id
    [changed] = [
        e for e in await node.store.read_stream(f"user-{user.user_id}")
        if e.type == "user.password_changed"
    ]  # fmt: skip
    assert changed.metadata["actor"].startswith("key:")
    assert changed.metadata["source"] == "127.0.0.1"
    assert set(changed.data) == {"user_id", "at"}


async def test_a_password_shorter_than_the_setting_is_a_clear_422(
    client: Client, admin: Any, user: Any, make_client: Any
) -> None:
    short = await client.put(
        f"/api/v1/users/{user.user_id}/password", json={"new": "eleven char"}, headers=admin.headers
    )
    laxer = await make_client(password_min_length=8)
    accepted = await laxer.put(
        f"/api/v1/users/{user.user_id}/password", json={"new": "eight ch"}, headers=admin.headers
    )

    assert await refused(short, 422) == "new needs at least 12 characters"
    details = (await short.json())["error"]["details"]
    assert details["field"] == "new" and details["limit"] == 12
    assert accepted.status == 204


async def test_a_user_changes_their_own_password_and_their_older_tokens_are_revoked(
    client: Client, make_caller: Any
) -> None:
    await make_caller("user", username="carol", password=PASSWORD)
    old = (await login(client, "carol"))["token"]
    other = (await login(client, "carol"))["token"]

    wrong = await client.post(
        "/api/v1/users/me/password",
        json={"current": "not the password", "new": "a brand new password"},
        headers=bearer(old),
    )
    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current": PASSWORD, "new": "a brand new password"},
        headers=bearer(old),
    )
    assert changed.status == 200, await changed.text()
    fresh = (await changed.json())["token"]

    assert await refused(wrong, 403) == "the current password is not right"
    for token in (old, other):
        me = await client.get("/api/v1/users/me", headers=bearer(token))
        assert await refused(me, 401) == "the token has been revoked"
    assert (await client.get("/api/v1/users/me", headers=bearer(fresh))).status == 200
    assert (await login(client, "carol", "a brand new password"))["user"]["username"] == "carol"
    old_login = await client.post(
        "/api/v1/auth/login", json={"username": "carol", "password": PASSWORD}
    )
    assert old_login.status == 401


async def test_only_an_admin_sets_another_users_password(
    client: Client, user: Any, other_user: Any
) -> None:
    resp = await client.put(
        f"/api/v1/users/{other_user.user_id}/password", json={"new": PASSWORD}, headers=user.headers
    )

    assert resp.status == 403


# --- 2. API keys: expiry and scopes ---------------------------------------------------------


async def test_a_key_created_with_an_expiry_and_scopes_lists_them(
    client: Client, user: Any
) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "ci", "expires_at": expires.isoformat(), "scopes": ["projects:read"]},
        headers=user.headers,
    )
    assert created.status == 201, await created.text()

    listing = await (await client.get("/api/v1/auth/api-keys", headers=user.headers)).json()

    by_name = {k["name"]: k for k in listing["items"]}
    assert datetime.fromisoformat(by_name["ci"]["expires_at"]) == expires
    assert by_name["ci"]["scopes"] == ["projects:read"]
    assert by_name["test key"]["expires_at"] is None
    assert by_name["test key"]["scopes"] == sorted(ROLE_SCOPES[user.user.role])


async def test_a_key_whose_expiry_has_passed_is_refused_and_recorded_expired_once(
    client: Client, node: LogNode, user: Any
) -> None:
    # The key is made by a unit of work whose clock is a day behind: its expiry, an hour
    # after "now" there, is already past for the server.
    yesterday = datetime.now(UTC) - timedelta(days=1)
    behind = Accounts(node.store, writer=Writer(node.store, now=lambda: yesterday))
    _, key = await behind.create_key(
        user.user.user_id,
        "short-lived",
        expires_at=yesterday + timedelta(hours=1),
        caller=TEST_CALLER,
    )

    first = await client.get("/api/v1/users/me", headers=bearer(key))
    again = await client.get("/api/v1/projects", headers={"X-API-Key": key})

    assert await refused(first, 401) == "the API key has expired"
    assert await refused(again, 401) == "the API key has expired"
    expired = [
        e for e in await node.store.read_stream(f"user-{user.user_id}")
        if e.type == "api_key.expired"
    ]  # fmt: skip
    assert len(expired) == 1
    assert expired[0].metadata["actor"].startswith("key:")
    assert expired[0].metadata["source"] == "127.0.0.1"
    assert (await client.get("/api/v1/users/me", headers=user.headers)).status == 200


async def test_a_key_cannot_be_created_expired_or_with_a_scope_its_role_lacks(
    client: Client, user: Any
) -> None:
    past = await client.post(
        "/api/v1/auth/api-keys",
        json={"expires_at": "2020-01-01T00:00:00Z"},
        headers=user.headers,
    )
    beyond = await client.post(
        "/api/v1/auth/api-keys", json={"scopes": ["users:admin"]}, headers=user.headers
    )
    unknown = await client.post(
        "/api/v1/auth/api-keys", json={"scopes": ["everything"]}, headers=user.headers
    )

    assert await refused(past, 422) == "'expires_at' must be in the future"
    assert await refused(beyond, 403) == "the role user does not grant: users:admin"
    assert unknown.status == 422


async def test_a_scoped_key_does_only_what_its_scopes_allow_and_its_tokens_no_more(
    client: Client, user: Any
) -> None:
    created = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "reader", "scopes": ["projects:read", "account"]},
        headers=user.headers,
    )
    key = (await created.json())["key"]

    read = await client.get("/api/v1/projects", headers=bearer(key))
    write = await client.post("/api/v1/projects", json={"name": "x"}, headers=bearer(key))
    hooks = await client.get("/api/v1/webhooks", headers=bearer(key))
    minted = await client.post("/api/v1/stream-tokens", headers=bearer(key))
    stream = await client.get("/api/v1/events/stream", headers=bearer(key))
    token = await (await client.post("/api/v1/auth/token", headers=bearer(key))).json()
    by_token = await client.post(
        "/api/v1/projects", json={"name": "x"}, headers=bearer(token["token"])
    )
    wider = await client.post(
        "/api/v1/auth/api-keys", json={"scopes": ["projects:write"]}, headers=bearer(key)
    )
    narrower = await client.post("/api/v1/auth/api-keys", json={}, headers=bearer(key))

    assert read.status == 200
    assert await refused(write, 403) == "the credentials lack the scope projects:write"
    assert hooks.status == 403
    assert minted.status == 403 and stream.status == 403
    assert jwt.decode(token["token"], options={"verify_signature": False})["scopes"] == [
        "account",
        "projects:read",
    ]
    assert by_token.status == 403
    assert wider.status == 422
    assert (await narrower.json())["scopes"] == ["account", "projects:read"]


async def test_every_way_to_start_a_run_needs_jobs_run(client: Client, user: Any) -> None:
    """A key that may write projects but not run jobs starts no run: not by execute, not by a
    quick action, not by a message with `run`; and nothing of the refused calls is written."""
    created = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "writer", "scopes": ["projects:read", "projects:write"]},
        headers=user.headers,
    )
    key = (await created.json())["key"]
    made = await client.post(
        "/api/v1/projects", json={"name": "p", "phases": [{"name": "a"}]}, headers=user.headers
    )
    project = (await made.json())["id"]
    assert (await client.post(f"/api/v1/projects/{project}/ready", headers=user.headers)).ok
    before = await client.get(f"/api/v1/projects/{project}/messages", headers=user.headers)

    execute = await client.post(f"/api/v1/projects/{project}/execute", headers=bearer(key))
    quick = await client.post(
        "/api/v1/quick-action", json={"prompt": "fix it"}, headers=bearer(key)
    )
    message = await client.post(
        f"/api/v1/projects/{project}/messages",
        json={"content": "again", "run": True},
        headers=bearer(key),
    )
    plain = await client.post(
        f"/api/v1/projects/{project}/messages", json={"content": "hello"}, headers=bearer(key)
    )

    for resp in (execute, quick, message):
        assert await refused(resp, 403) == "the credentials lack the scope jobs:run"
    assert plain.status == 201
    after = await client.get(f"/api/v1/projects/{project}/messages", headers=user.headers)
    assert len((await after.json())["items"]) == len((await before.json())["items"]) + 1
    listed = await (await client.get("/api/v1/projects", headers=user.headers)).json()
    assert [p["id"] for p in listed["items"]] == [project]


async def test_a_stream_token_carries_no_more_than_the_key_it_was_minted_with(
    client: Client, user: Any
) -> None:
    created = await client.post(
        "/api/v1/auth/api-keys", json={"scopes": ["events:read"]}, headers=user.headers
    )
    key = (await created.json())["key"]
    minted = await (await client.post("/api/v1/stream-tokens", headers=bearer(key))).json()

    claims = jwt.decode(minted["token"], options={"verify_signature": False})
    stream = await open_sse(client, f"/api/v1/events/stream?access_token={minted['token']}")
    stream.resp.close()

    assert claims["scopes"] == ["events:read"]
    assert claims["key"] == (await created.json())["id"]


async def test_every_route_of_the_router_declares_its_scope_and_the_table_names_no_other(
    app: web.Application,
) -> None:
    served = {
        (route.method, template(route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }

    assert served == set(ROUTE_SCOPES)
    assert {s for s in ROUTE_SCOPES.values() if s is not None} <= set(SCOPES)


async def test_a_worker_key_cannot_read_projects_and_an_auditor_key_cannot_run_jobs(
    client: Client, worker: Any, auditor: Any
) -> None:
    workers = await client.get("/api/v1/workers", headers=worker.headers)
    projects = await client.get("/api/v1/projects", headers=worker.headers)
    verify = await client.get("/api/v1/audit/verify", headers=auditor.headers)
    create = await client.post("/api/v1/projects", json={"name": "x"}, headers=auditor.headers)

    assert workers.status == 200 and verify.status == 200
    assert await refused(projects, 403) == "the credentials lack the scope projects:read"
    assert create.status == 403


# --- 3. revocable sessions ------------------------------------------------------------------


async def test_logout_revokes_the_presented_token_only(
    client: Client, make_caller: Any, node: LogNode
) -> None:
    carol = await make_caller("user", username="carol", password=PASSWORD)
    token = (await login(client, "carol"))["token"]
    other = (await login(client, "carol"))["token"]

    out = await client.post("/api/v1/auth/logout", headers=bearer(token))
    after = await client.get("/api/v1/users/me", headers=bearer(token))
    again = await client.post("/api/v1/auth/logout", headers=bearer(token))
    with_key = await client.post("/api/v1/auth/logout", headers=carol.headers)

    assert out.status == 204
    assert await refused(after, 401) == "the token has been revoked"
    assert again.status == 401
    assert with_key.status == 403
    assert (await client.get("/api/v1/users/me", headers=bearer(other))).status == 200
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    [revoked] = [
        e for e in await node.store.read_stream(f"user-{carol.user_id}")
        if e.type == "user.token_revoked"
    ]  # fmt: skip
    assert revoked.data["token_id"] == jti
    assert revoked.metadata["actor"] == f"user:{carol.user_id}"
    assert (
        await node.store.pool.fetchval(
            "SELECT count(*) FROM revoked_tokens WHERE token_id = $1", jti
        )
        == 1
    )


async def test_a_logout_closes_the_streams_opened_with_that_token_and_no_other(
    client: Client, make_caller: Any
) -> None:
    carol = await make_caller("user", username="carol", password=PASSWORD)
    token = (await login(client, "carol"))["token"]
    minted = await (await client.post("/api/v1/stream-tokens", headers=bearer(token))).json()
    by_header = await open_sse(client, "/api/v1/events/stream", headers=bearer(token))
    by_stream_token = await open_sse(
        client, f"/api/v1/events/stream?access_token={minted['token']}"
    )
    by_key = await open_sse(client, "/api/v1/events/stream", headers=carol.headers)

    assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status == 204

    closed = await ended(by_header)
    also_closed = await ended(by_stream_token)
    assert told_why(by_header, closed, "UNAUTHORIZED") == "the token has been revoked"
    assert told_why(by_stream_token, also_closed, "UNAUTHORIZED") == "the token has been revoked"
    created = await client.post("/api/v1/projects", json={"name": "on"}, headers=carol.headers)
    assert created.status == 201
    kept = await by_key.until(lambda m: any(x.event == "project.created" for x in m))
    by_key.resp.close()
    assert kept[-1].event == "project.created"
    late = await client.get(f"/api/v1/events/stream?access_token={minted['token']}", headers={})
    assert await refused(late, 401) == "the token has been revoked"


async def test_an_admin_revokes_every_token_a_user_was_issued_before_that_moment(
    client: Client, admin: Any, make_caller: Any, node: LogNode
) -> None:
    carol = await make_caller("user", username="carol", password=PASSWORD)
    tokens = [(await login(client, "carol"))["token"] for _ in range(2)]

    resp = await client.post(f"/api/v1/users/{carol.user_id}/revoke-tokens", headers=admin.headers)
    fresh = (await login(client, "carol"))["token"]
    by_user = await client.post(
        f"/api/v1/users/{carol.user_id}/revoke-tokens", headers=carol.headers
    )

    assert resp.status == 200
    for token in tokens:
        me = await client.get("/api/v1/users/me", headers=bearer(token))
        assert await refused(me, 401) == "the token has been revoked"
    assert (await client.get("/api/v1/users/me", headers=bearer(fresh))).status == 200
    assert (await client.get("/api/v1/users/me", headers=carol.headers)).status == 200
    assert by_user.status == 403
    types = [e.type for e in await node.store.read_stream(f"user-{carol.user_id}")]
    assert types.count("user.tokens_revoked") == 1


# --- 4. the login's shape -------------------------------------------------------------------


async def test_the_login_answers_the_users_roles_as_a_list(
    client: Client, make_caller: Any
) -> None:
    await make_caller("auditor", username="erin", password=PASSWORD)

    body = await login(client, "erin")

    assert body["user"]["roles"] == ["auditor"]
    assert body["user"]["role"] == "auditor"


# --- 5. audit -------------------------------------------------------------------------------


async def test_account_events_are_in_the_audit_log_with_actor_and_source_for_auditors(
    client: Client, node: LogNode, auditor: Any, admin: Any, make_caller: Callable[..., Any]
) -> None:
    carol = await make_caller("user", username="carol", password=PASSWORD)
    await client.post("/api/v1/auth/login", json={"username": "carol", "password": "wrong one"})
    token = (await login(client, "carol"))["token"]
    await client.post(
        "/api/v1/users/me/password",
        json={"current": PASSWORD, "new": "another long password"},
        headers=bearer(token),
    )
    fresh = (await login(client, "carol", "another long password"))["token"]
    created = await client.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=bearer(fresh))
    await client.delete(
        f"/api/v1/auth/api-keys/{(await created.json())['id']}", headers=bearer(fresh)
    )
    await client.post("/api/v1/auth/logout", headers=bearer(fresh))
    await settled(node)

    resp = await client.get(
        "/api/v1/events",
        params={"stream_id": f"user-{carol.user_id}", "limit": "1000"},
        headers=auditor.headers,
    )

    assert resp.status == 200
    events = [e for e in (await resp.json())["items"] if e["metadata"]["source"] != "pytest"]
    assert [e["type"] for e in events] == [
        "auth.login_failed",
        "auth.login_succeeded",
        "user.password_changed",
        "auth.login_succeeded",
        "api_key.created",
        "api_key.revoked",
        "user.token_revoked",
    ]
    for event in events:
        assert event["metadata"]["source"] == "127.0.0.1"
        assert event["metadata"]["actor"] in ("anonymous", f"user:{carol.user_id}")
    assert "hash" not in str(events[2]["data"])


async def test_a_route_added_without_a_declared_scope_is_refused_rather_than_open(
    aiohttp_client: Any, app: web.Application, user: Any
) -> None:
    async def undeclared(request: web.Request) -> web.Response:
        return web.json_response({"leaked": True})

    app.router.add_get("/api/v1/undeclared", undeclared)
    client = await aiohttp_client(app)

    resp = await client.get("/api/v1/undeclared", headers=user.headers)

    assert await refused(resp, 403) == "this route declares no scope"


async def test_a_stream_token_never_outlives_the_key_it_was_minted_with(
    client: Client, user: Any
) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=90)).replace(microsecond=0)
    created = await client.post(
        "/api/v1/auth/api-keys", json={"expires_at": soon.isoformat()}, headers=user.headers
    )
    key = (await created.json())["key"]

    minted = await (await client.post("/api/v1/stream-tokens", headers=bearer(key))).json()

    assert datetime.fromisoformat(minted["expires_at"]) <= soon
    assert 0 < minted["expires_in"] <= 90
