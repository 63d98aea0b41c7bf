"""The discussion routes over HTTP: /discuss and a project's messages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode

Client = TestClient[Any, Any]


async def event_count(node: LogNode) -> int:
    assert node.pool is not None
    return int(await node.pool.fetchval("SELECT count(*) FROM events"))


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    return dict((await resp.json())["error"])


async def test_discussing_without_a_project_starts_one_in_discussion(
    client: Client, user: Any
) -> None:
    resp = await client.post(
        "/api/v1/discuss", json={"content": "Build me a  URL shortener"}, headers=user.headers
    )

    assert resp.status == 201
    body = await resp.json()
    assert resp.headers["Location"] == f"/api/v1/projects/{body['project_id']}"
    assert body["project"]["status"] == "discussing"
    assert body["project"]["name"] == "Build me a URL shortener"
    assert [(m["role"], m["author"], m["content"]) for m in body["messages"]] == [
        ("user", "alice", "Build me a  URL shortener")
    ]


async def test_discussing_a_project_appends_to_its_thread(client: Client, user: Any) -> None:
    first = await (
        await client.post(
            "/api/v1/discuss", json={"content": "hi", "name": "Chat"}, headers=user.headers
        )
    ).json()

    resp = await client.post(
        "/api/v1/discuss",
        json={"project_id": first["project_id"], "content": "Use Go.", "role": "assistant",
              "author": "planner"},
        headers=user.headers,
    )  # fmt: skip

    assert resp.status == 200
    body = await resp.json()
    assert body["project"]["name"] == "Chat"
    assert [(m["seq"], m["role"]) for m in body["messages"]] == [(1, "user"), (2, "assistant")]
    assert body["total"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": "x", "role": "robot"}, "role"),
        ({"content": "x", "project_id": "nope"}, "project_id"),
        ({"content": "x", "mood": "happy"}, "mood"),
    ],
)
async def test_a_bad_discussion_message_is_a_422_and_creates_nothing(
    client: Client, user: Any, node: LogNode, body: dict[str, Any], field: str
) -> None:
    before = await event_count(node)
    resp = await client.post("/api/v1/discuss", json=body, headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == field
    assert await event_count(node) == before


async def test_a_message_of_only_spaces_is_refused_by_the_domain(
    client: Client, user: Any, node: LogNode
) -> None:
    before = await event_count(node)
    resp = await client.post("/api/v1/discuss", json={"content": "   "}, headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == "content"
    assert await event_count(node) == before


async def test_discussing_another_users_project_is_not_found(
    client: Client, user: Any, other_user: Any
) -> None:
    mine = await (
        await client.post("/api/v1/discuss", json={"content": "hi"}, headers=user.headers)
    ).json()
    pid = mine["project_id"]
    resp = await client.post(
        "/api/v1/discuss",
        json={"project_id": pid, "content": "mine now"},
        headers=other_user.headers,
    )
    assert (await error_of(resp, 404))["code"] == "NOT_FOUND"
    for method in ("GET", "POST"):
        resp = await client.request(
            method, f"/api/v1/projects/{pid}/messages",
            json={"content": "x"} if method == "POST" else None, headers=other_user.headers,
        )  # fmt: skip
        assert resp.status == 404
    resp = await client.post(
        "/api/v1/discuss",
        json={"project_id": str(uuid.uuid4()), "content": "x"},
        headers=user.headers,
    )
    assert resp.status == 404


async def test_messages_are_posted_with_any_role_and_listed_in_order(
    client: Client, user: Any
) -> None:
    project = await (
        await client.post("/api/v1/projects", json={"name": "p"}, headers=user.headers)
    ).json()
    path = f"/api/v1/projects/{project['id']}/messages"
    for role in ("user", "assistant", "agent", "system"):
        resp = await client.post(
            path, json={"content": f"from {role}", "role": role}, headers=user.headers
        )
        assert resp.status == 201
        posted = await resp.json()
        assert (posted["role"], posted["content"]) == (role, f"from {role}")
    assert posted["seq"] == 4 and posted["project_status"] == "discussing"

    page = await (await client.get(f"{path}?limit=2&offset=1", headers=user.headers)).json()
    assert [m["role"] for m in page["items"]] == ["assistant", "agent"]
    assert (page["has_more"], page["next"]) == (True, f"{path}?limit=2&offset=3")
    last = await (await client.get(page["next"], headers=user.headers)).json()
    assert ([m["role"] for m in last["items"]], last["has_more"], last["next"]) == (
        ["system"],
        False,
        None,
    )
    agents = await (await client.get(f"{path}?role=agent", headers=user.headers)).json()
    assert [m["content"] for m in agents["items"]] == ["from agent"]
    resp = await client.get(f"{path}?role=robot", headers=user.headers)
    assert (await error_of(resp, 422))["details"]["field"] == "role"


async def test_an_archived_project_takes_no_more_messages(client: Client, user: Any) -> None:
    project = await (
        await client.post("/api/v1/projects", json={"name": "p"}, headers=user.headers)
    ).json()
    await client.delete(f"/api/v1/projects/{project['id']}", headers=user.headers)
    resp = await client.post(
        f"/api/v1/projects/{project['id']}/messages", json={"content": "x"}, headers=user.headers
    )
    error = await error_of(resp, 409)
    assert (error["details"]["current_state"], error["details"]["reason"]) == ("draft", "archived")


async def test_discussion_routes_need_credentials(client: Client) -> None:
    assert (await client.post("/api/v1/discuss", json={"content": "x"})).status == 401
    assert (await client.get(f"/api/v1/projects/{uuid.uuid4()}/messages")).status == 401
