"""`GET /api/v1/events`: every filter, alone and combined, selects exactly what a fold over the
whole log in Python selects; users see only their own events; paging visits each event once."""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.eventstore import ANY_VERSION, EncodedEvent, RecordedEvent
from tests.support import settled

Client = TestClient[Any, Any]


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def whole_log(node: LogNode) -> list[RecordedEvent]:
    return await node.store.read_all(0, 100_000)


async def owned_projects(node: LogNode, user_id: str) -> set[str]:
    assert node.pool is not None
    rows = await node.pool.fetch("SELECT project_id FROM projects WHERE owner = $1", user_id)
    return {str(r["project_id"]) for r in rows}


def matches(event: RecordedEvent, query: dict[str, str]) -> bool:
    """The filters' meaning, written over the log in Python."""
    if "after" in query and (event.position or 0) <= int(query["after"]):
        return False
    if "stream_id" in query and event.stream_id != query["stream_id"]:
        return False
    if "project_id" in query and str(event.project_id) != query["project_id"]:
        return False
    if "type" in query:
        globs = [g for g in query["type"].split(",") if g]
        if not any(fnmatch.fnmatchcase(event.type, g) for g in globs):
            return False
    if "actor" in query and event.metadata.get("actor") != query["actor"]:
        return False
    if "since" in query and event.recorded_at < datetime.fromisoformat(query["since"]):
        return False
    return not ("until" in query and event.recorded_at >= datetime.fromisoformat(query["until"]))


async def fetch_all(
    client: Client, headers: dict[str, str], query: dict[str, str], limit: int = 7
) -> list[int]:
    """Every position the API returns for `query`, following `next` page by page."""
    positions: list[int] = []
    resp = await client.get(
        "/api/v1/events", params={**query, "limit": str(limit)}, headers=headers
    )
    for _ in range(1000):
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert set(body) == {"items", "next", "has_more"}
        positions += [item["position"] for item in body["items"]]
        if not body["has_more"]:
            assert body["next"] is None
            return positions
        resp = await client.get(body["next"], headers=headers)
    raise AssertionError("paging did not end")


def queries_for(log: list[RecordedEvent], made: Any, other: Any) -> list[dict[str, str]]:
    """Each filter alone, and every pair and a few triples of them."""
    middle, late = log[len(log) // 3], log[2 * len(log) // 3]
    single: list[dict[str, str]] = [
        {"after": str(middle.position)},
        {"stream_id": f"project-{made.finished_project}"},
        {"project_id": str(other.finished_project)},
        {"type": "job.phase_*"},
        {"type": "project.created,job.completed"},
        {"actor": made.caller.actor},
        {"actor": "system:worker"},
        {"since": rfc3339(middle.recorded_at)},
        {"until": rfc3339(late.recorded_at)},
        {"since": rfc3339(middle.recorded_at), "until": rfc3339(late.recorded_at)},
    ]
    combined = [{**a, **b} for a, b in itertools.combinations(single, 2)]
    triples = [{**a, **b, **c} for a, b, c in itertools.combinations(single[:6], 3)]
    return single + combined + triples


async def test_each_filter_alone_and_combined_returns_exactly_the_matching_events(
    client: Client,
    node: LogNode,
    admin: Any,
    user: Any,
    other_user: Any,
    history: Callable[..., Any],
) -> None:
    made = await history(user)
    other = await history(other_user, source="203.0.113.9")
    log = await whole_log(node)

    narrowing = 0
    for query in queries_for(log, made, other):
        expected = [e.position for e in log if matches(e, query)]
        assert await fetch_all(client, admin.headers, query) == expected, query
        narrowing += 0 < len(expected) < len(log)
    assert narrowing >= len(queries_for(log, made, other)) // 2  # the filters do select
    assert await fetch_all(client, admin.headers, {}, limit=1000) == [e.position for e in log]


async def test_repeated_type_parameters_are_alternatives_like_a_comma_separated_list(
    client: Client, node: LogNode, admin: Any, user: Any, history: Callable[..., Any]
) -> None:
    await history(user)
    log = await whole_log(node)
    params = [("type", "project.created"), ("type", "job.queued,job.completed")]

    resp = await client.get("/api/v1/events", params=params, headers=admin.headers)

    body = await resp.json()
    wanted = {"project.created", "job.queued", "job.completed"}
    assert [i["position"] for i in body["items"]] == [e.position for e in log if e.type in wanted]


async def test_a_user_cannot_read_another_users_events_through_any_filter(
    client: Client, node: LogNode, user: Any, other_user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    other = await history(other_user, source="203.0.113.9")
    log = await whole_log(node)
    mine = await owned_projects(node, user.user_id)

    def visible(event: RecordedEvent) -> bool:
        return str(event.project_id) in mine or event.stream_id == f"user-{user.user_id}"

    queries = [
        {},
        *queries_for(log, made, other),
        {"stream_id": f"user-{other_user.user_id}"},
        {"stream_id": f"job-{other.finished_job}"},
        {"project_id": str(other.cancelled_project)},
        {"actor": other.caller.actor},
        {"type": "*"},
        {"type": "user.*,api_key.*,auth.*"},
    ]
    for query in queries:
        expected = [e.position for e in log if matches(e, query) and visible(e)]
        assert await fetch_all(client, user.headers, query) == expected, query
    others = [e for e in log if str(e.project_id) in {str(other.finished_project)}]
    for event in others[:5]:
        resp = await client.get(f"/api/v1/events/{event.position}", headers=user.headers)
        assert resp.status == 404
    assert any(e.stream_id == f"user-{user.user_id}" for e in log if visible(e))


async def test_auditors_and_admins_see_every_event_and_users_their_own_stream(
    client: Client, node: LogNode, admin: Any, auditor: Any, user: Any, history: Callable[..., Any]
) -> None:
    await history(user)
    log = await whole_log(node)

    for who in (admin, auditor):
        assert await fetch_all(client, who.headers, {}, limit=50) == [e.position for e in log]
    own = await fetch_all(client, user.headers, {"stream_id": f"user-{user.user_id}"})
    assert own == [e.position for e in log if e.stream_id == f"user-{user.user_id}"]
    assert own  # the user's creation and key


async def test_one_event_by_position_has_the_history_shape_plus_its_project_and_stream_type(
    client: Client, node: LogNode, user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    log = await whole_log(node)
    created = next(e for e in log if e.stream_id == f"project-{made.finished_project}")

    resp = await client.get(f"/api/v1/events/{created.position}", headers=user.headers)
    history_resp = await client.get(
        f"/api/v1/projects/{made.finished_project}/history", headers=user.headers
    )

    assert resp.status == 200
    event = await resp.json()
    first = (await history_resp.json())["items"][0]
    assert {k: event[k] for k in first} == first
    assert event["project_id"] == str(made.finished_project)
    assert event["stream_type"] == "project"
    assert event["type"] == "project.created"
    assert event["metadata"]["actor"] == made.caller.actor
    assert resp.headers["X-Helix-Position"] == str(created.position)


async def test_an_unknown_or_malformed_position_is_not_found(client: Client, admin: Any) -> None:
    for raw in ("999999", "abc", "-1", "1.5"):
        resp = await client.get(f"/api/v1/events/{raw}", headers=admin.headers)
        assert resp.status == 404, raw
        assert (await resp.json())["error"]["code"] == "NOT_FOUND"


async def test_malformed_filters_are_refused_with_the_field_named(
    client: Client, admin: Any
) -> None:
    bad = [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-01-01T00:00:00"}, "until"),  # no offset: which instant?
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"project_id": "not-a-uuid"}, "project_id"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"after": "-1"}, "after"),
        ({"after": "x"}, "after"),
    ]
    for params, field in bad:
        resp = await client.get("/api/v1/events", params=params, headers=admin.headers)
        assert resp.status == 422, params
        error = (await resp.json())["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"]["field"] == field


async def test_the_default_page_is_100_events_and_workers_may_not_read_the_log(
    client: Client, node: LogNode, admin: Any, worker: Any, history: Callable[..., Any]
) -> None:
    await node.store.append(
        "test-many",
        ANY_VERSION,
        [EncodedEvent(type="test.tick", schema_version=1, data={"n": n}) for n in range(101)],
    )
    await settled(node)
    resp = await client.get("/api/v1/events", headers=admin.headers)
    body = await resp.json()
    assert len(body["items"]) == 100 and body["has_more"]
    last = body["items"][-1]["position"]
    assert body["next"] == f"/api/v1/events?after={last}"

    resp = await client.get("/api/v1/events", headers=worker.headers)
    assert resp.status == 403


async def test_logins_keys_and_role_changes_are_events_with_actor_and_source(
    client: Client, node: LogNode, admin: Any, make_caller: Callable[..., Any]
) -> None:
    carol = await make_caller("user", username="carol", password="correct horse battery")
    for password in ("wrong", "correct horse battery"):
        await client.post("/api/v1/auth/login", json={"username": "carol", "password": password})
    await client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x"})
    created = await client.post("/api/v1/auth/api-keys", json={"name": "ci"}, headers=carol.headers)
    key_id = (await created.json())["id"]
    await client.delete(f"/api/v1/auth/api-keys/{key_id}", headers=carol.headers)
    await client.patch(
        f"/api/v1/users/{carol.user_id}", json={"role": "auditor"}, headers=admin.headers
    )
    # The audit log shows positioned events only: wait for the sequencer to reach the last one.
    assert node.pool is not None
    async with asyncio.timeout(10):
        while True:
            if not await node.pool.fetchval("SELECT count(*) FROM events WHERE position IS NULL"):
                break
            await asyncio.sleep(0.01)
    head = int(await node.pool.fetchval("SELECT max(position) FROM events"))
    assert await node.store.wait_for_position(head, timeout=10)

    resp = await client.get(
        "/api/v1/events",
        params={"type": "auth.*,api_key.*,user.role_changed", "limit": "1000"},
        headers=admin.headers,
    )
    events = [e for e in (await resp.json())["items"] if e["metadata"].get("source") != "pytest"]

    kinds = sorted(e["type"] for e in events)
    assert kinds == sorted(
        ["auth.login_failed", "auth.login_succeeded", "auth.login_failed",
         "api_key.created", "api_key.revoked", "user.role_changed"]
    )  # fmt: skip
    for event in events:
        assert event["metadata"]["actor"], event
        assert event["metadata"]["source"], event
    by_type = {e["type"]: e for e in events}
    assert by_type["user.role_changed"]["metadata"]["actor"].startswith("key:")
    assert by_type["api_key.created"]["metadata"]["actor"].startswith("key:")
    assert by_type["auth.login_succeeded"]["metadata"]["actor"] == f"user:{carol.user_id}"
