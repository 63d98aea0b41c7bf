"""One API shape: ids, methods, the list envelope, query parameters, positions and aliases,
the same on every route."""

from __future__ import annotations

import string
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from helix.api.openapi import PLACEHOLDER
from helix.api.requests import query_rule
from helix.bootstrap import LogNode
from helix.eventstore import ANY_VERSION, EncodedEvent
from helix.webhooks.signatures import secret_key, signing_secret
from tests.support import bounded, error_of, settled

Client = TestClient[Any, Any]
NOT_A_UUID = "0000-not-a-uuid"


# --- ids and methods --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/users/{NOT_A_UUID}"),
        ("PATCH", f"/api/v1/users/{NOT_A_UUID}"),
        ("DELETE", f"/api/v1/auth/api-keys/{NOT_A_UUID}"),
        ("GET", f"/api/v1/projects/{NOT_A_UUID}"),
        ("GET", f"/api/v1/jobs/{NOT_A_UUID}/output"),
        ("GET", f"/api/v1/webhooks/{NOT_A_UUID}"),
        ("GET", f"/api/v1/workers/{NOT_A_UUID}"),
        ("POST", f"/api/v1/jobs/{NOT_A_UUID}/cancel"),
    ],
)
async def test_an_id_that_is_not_a_uuid_names_no_resource(
    client: Client, admin: Any, method: str, path: str
) -> None:
    resp = await client.request(method, path, json={}, headers=admin.headers)

    assert (await error_of(resp, 404))["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/users/me", "GET,HEAD"),
        ("GET", "/api/v1/workers/register", "POST"),
        ("GET", "/api/v1/workers/heartbeat", "POST"),
        ("DELETE", "/api/v1/projects", "GET,HEAD,POST"),
    ],
)
async def test_a_wrong_method_is_405_method_not_allowed_with_the_paths_own_methods(
    client: Client, admin: Any, method: str, path: str, allow: str
) -> None:
    resp = await client.request(method, path, headers=admin.headers)

    error = await error_of(resp, 405)
    assert error["code"] == "METHOD_NOT_ALLOWED"
    assert resp.headers["Allow"] == allow
    assert error["details"]["allowed_methods"] == allow.split(",")


async def append_tests(node: LogNode, kinds: str) -> int:
    """Events `test.<kind>` for each letter, sequenced; the head after them."""
    events = [EncodedEvent(type=f"test.{kind}", schema_version=1, data={}) for kind in kinds]
    await node.store.append(f"test-{uuid.uuid4()}", ANY_VERSION, events)
    return await settled(node)


# --- query parameters -------------------------------------------------------------------------


def get_routes(app: web.Application) -> list[tuple[str, frozenset[str]]]:
    """Every GET route (path template, the query names it takes, aliases included)."""
    found = []
    for route in app.router.routes():
        if route.method != "GET" or route.resource is None:
            continue
        rule = query_rule(route.handler)
        template = PLACEHOLDER.sub(r"{\1}", route.resource.canonical)
        found.append((template, rule.names | frozenset(rule.aliases)))
    return sorted(found)


def filled(template: str) -> str:
    return PLACEHOLDER.sub(
        lambda m: "1" if m.group(1) == "position" else str(uuid.uuid4()), template
    )


NAMES = st.sampled_from(["page", "page_size", "per_page", "types", "q", "sort"]) | st.text(
    string.ascii_letters + string.digits + "_-.[]", min_size=1, max_size=24
)


@bounded(examples=150)
@given(data=st.data())
async def test_an_unknown_query_parameter_on_any_get_route_is_a_422_listing_the_known_ones(
    client: Client, app: web.Application, admin: Any, data: st.DataObject
) -> None:
    template, known = data.draw(st.sampled_from(get_routes(app)), label="route")
    name = data.draw(NAMES.filter(lambda n: n not in known), label="name")

    resp = await client.get(filled(template), params={name: "1"}, headers=admin.headers)

    error = await error_of(resp, 422)
    assert error["code"] == "VALIDATION_ERROR"
    assert (error["details"]["field"], error["details"]["known"]) == (name, sorted(known))


def test_every_get_route_is_in_the_property_test_and_lists_declare_their_paging(
    app: web.Application,
) -> None:
    routes = dict(get_routes(app))
    assert len(routes) > 20
    assert routes["/api/v1/users"] >= {"limit", "offset", "role"}
    assert routes["/api/v1/events"] >= {"type", "event_type", "since", "start_time"}
    assert routes["/healthz"] == frozenset()


@pytest.mark.parametrize(
    ("path", "name", "right"),
    [
        ("/api/v1/events", "types", "type"),
        ("/api/v1/events/stream", "types", "type"),
        ("/api/v1/projects", "page", "offset"),
        ("/api/v1/jobs", "page_size", "limit"),
    ],
)
async def test_a_name_from_elsewhere_is_refused_naming_the_right_one(
    client: Client, admin: Any, path: str, name: str, right: str
) -> None:
    resp = await client.get(path, params={name: "2"}, headers=admin.headers)

    error = await error_of(resp, 422)
    assert f"use '{right}'" in error["message"] and right in error["details"]["known"]


async def test_the_audit_log_takes_the_seeds_filter_names_as_aliases(
    client: Client, node: LogNode, admin: Any
) -> None:
    await append_tests(node, "aba")

    async def types(params: dict[str, str]) -> list[str]:
        resp = await client.get("/api/v1/events", params=params, headers=admin.headers)
        assert resp.status == 200, await resp.text()
        return [e["type"] for e in (await resp.json())["items"]]

    assert await types({"event_type": "test.a"}) == ["test.a", "test.a"]
    assert await types({"event_type": "test.a"}) == await types({"type": "test.a"})
    window = {"start_time": "2000-01-01T00:00:00Z", "end_time": "2000-01-02T00:00:00Z"}
    assert await types(window) == []
    assert await types({"type": "test.b", "start_time": "2000-01-01T00:00:00Z"}) == ["test.b"]
    for both in ({"type": "a", "event_type": "b"}, {"since": window["start_time"], **window}):
        resp = await client.get("/api/v1/events", params=both, headers=admin.headers)
        assert "not both" in (await error_of(resp, 422))["message"], both
    resp = await client.get(
        "/api/v1/events", params={"start_time": "yesterday"}, headers=admin.headers
    )
    assert (await error_of(resp, 422))["details"]["field"] == "since"


async def test_a_stream_filters_by_type_as_the_audit_log_does(
    client: Client, node: LogNode, admin: Any
) -> None:
    await append_tests(node, "ab")

    resp = await client.get(
        "/api/v1/events/stream",
        params={"type": "test.b", "after": "0"},
        headers=admin.headers,
    )
    assert resp.status == 200
    seen = b""
    while b"event: test.b" not in seen:
        seen += await resp.content.readany()
    resp.close()
    assert b"event: test.a" not in seen


# --- positions --------------------------------------------------------------------------------


def position_of(resp: Any) -> int:
    return int(resp.headers["X-Helix-Position"])


async def test_create_message_execute_and_cancel_answers_carry_the_log_position(
    client: Client, node: LogNode, user: Any
) -> None:
    before = await append_tests(node, "a")
    created = await client.post(
        "/api/v1/projects", json={"name": "stamped", "phases": [{"name": "plan"}]},
        headers=user.headers,
    )  # fmt: skip
    assert created.status == 201
    project_id = (await created.json())["id"]
    base = f"/api/v1/projects/{project_id}"
    message = await client.post(f"{base}/messages", json={"content": "hi"}, headers=user.headers)
    assert message.status == 201
    await client.post(f"{base}/ready", headers=user.headers)
    executed = await client.post(f"{base}/execute", headers=user.headers)
    assert executed.status == 202
    cancelled = await client.post(f"{base}/cancel", headers=user.headers)
    assert cancelled.status == 200
    key = await client.post("/api/v1/auth/api-keys", json={"name": "k"}, headers=user.headers)
    assert key.status == 201

    stamps = [position_of(r) for r in (created, message, executed, cancelled, key)]
    head = await settled(node)
    # Each is a head the server saw after the write committed: never behind what came before,
    # never past the log, and never going back.
    assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= head


async def test_as_of_past_the_head_is_refused_not_echoed(
    client: Client, node: LogNode, user: Any
) -> None:
    created = await client.post("/api/v1/projects", json={"name": "then"}, headers=user.headers)
    project_id = (await created.json())["id"]
    head = await settled(node)
    path = f"/api/v1/projects/{project_id}"

    at_head = await client.get(path, params={"as_of": str(head)}, headers=user.headers)
    assert at_head.status == 200 and position_of(at_head) == head
    past = await client.get(path, params={"as_of": str(head + 1)}, headers=user.headers)

    error = await error_of(past, 404)
    assert (error["details"]["field"], error["details"]["head"]) == ("as_of", head)
    assert "X-Helix-Position" not in past.headers


# --- seed compatibility -----------------------------------------------------------------------


async def test_discuss_takes_message_as_an_alias_of_content_but_not_both(
    client: Client, user: Any
) -> None:
    started = await client.post(
        "/api/v1/discuss", json={"message": "Build a CLI.", "name": "seed"}, headers=user.headers
    )
    assert started.status == 201, await started.text()
    body = await started.json()
    assert [m["content"] for m in body["messages"]] == ["Build a CLI."]
    path = f"/api/v1/projects/{body['project_id']}/messages"
    posted = await client.post(path, json={"message": "In Go."}, headers=user.headers)
    assert posted.status == 201 and (await posted.json())["content"] == "In Go."

    both = await client.post(
        "/api/v1/discuss", json={"message": "a", "content": "b"}, headers=user.headers
    )
    assert "not both" in (await error_of(both, 422))["message"]
    neither = await client.post("/api/v1/discuss", json={"name": "x"}, headers=user.headers)
    error = await error_of(neither, 422)
    assert error["details"]["field"] == "content"
    thread = await (await client.get(path, headers=user.headers)).json()
    assert [m["content"] for m in thread["items"]] == ["Build a CLI.", "In Go."]


async def test_a_webhook_takes_events_and_a_plain_secret_that_is_never_shown_again(
    client: Client, node: LogNode, user: Any
) -> None:
    plain = "helixcode-shared-secret-0123456789"
    resp = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/seed", "events": ["job.*"], "secret": plain},
        headers=user.headers,
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["event_types"] == ["job.*"]
    assert created["secret"] == signing_secret(plain)
    stored = await node.store.pool.fetchval(
        "SELECT secret FROM webhook_secrets WHERE endpoint_id = $1", uuid.UUID(created["id"])
    )
    assert secret_key(stored) == plain.encode()
    for path in ("/api/v1/webhooks", f"/api/v1/webhooks/{created['id']}"):
        text = await (await client.get(path, headers=user.headers)).text()
        assert plain not in text and created["secret"] not in text and 'secret"' not in text

    for body in (
        {"url": "https://hooks.example.com/a", "events": ["*"], "event_types": ["*"]},
        {"url": "https://hooks.example.com/b", "secret": "too-short"},
    ):
        refused = await client.post("/api/v1/webhooks", json=body, headers=user.headers)
        await error_of(refused, 422)


async def test_login_answers_the_users_roles_beside_their_role(
    client: Client, make_caller: Any
) -> None:
    await make_caller("auditor", username="ann", password="correct horse battery")
    resp = await client.post(
        "/api/v1/auth/login", json={"username": "ann", "password": "correct horse battery"}
    )

    assert resp.status == 200
    user = (await resp.json())["user"]
    assert (user["role"], user["roles"]) == ("auditor", ["auditor"])
