"""`GET /projects/{id}?as_of=` and `GET /jobs/{id}?as_of=`: the state folded from the events up
to a position or an instant, shaped like the live views, with the live views' visibility."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode

Client = TestClient[Any, Any]


def without_as_of(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "as_of"}


async def get(client: Client, path: str, headers: dict[str, str], **params: str) -> Any:
    resp = await client.get(path, params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_as_of_the_head_equals_the_live_project_and_job(
    client: Client, node: LogNode, user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    head = str(await node.store.head())

    for path in (
        f"/api/v1/projects/{made.finished_project}",
        f"/api/v1/jobs/{made.finished_job}",
        f"/api/v1/projects/{made.cancelled_project}",
        f"/api/v1/jobs/{made.cancelled_job}",
    ):
        live = await get(client, path, user.headers)
        past = await get(client, path, user.headers, as_of=head)
        assert without_as_of(past) == live, path
        assert past["as_of"]["position"] == int(head)


async def test_a_project_as_of_earlier_positions_shows_each_status_it_went_through(
    client: Client, node: LogNode, user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    stream = await node.store.read_stream(f"project-{made.finished_project}")
    path = f"/api/v1/projects/{made.finished_project}"

    statuses = []
    for event in stream:
        assert event.position is not None
        view = await get(client, path, user.headers, as_of=str(event.position))
        assert view["version"] == event.version
        assert view["as_of"]["last_position"] == event.position
        statuses.append(view["status"])
    assert statuses[0] == "draft"
    assert "discussing" in statuses and "ready" in statuses and "running" in statuses
    assert statuses[-1] == "completed"


async def test_a_job_as_of_a_time_shows_the_phases_output_and_cost_recorded_by_then(
    client: Client, node: LogNode, user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    stream = await node.store.read_stream(f"job-{made.finished_job}")
    plan_done = next(
        e for e in stream if e.type == "job.phase_completed" and e.data["phase"] == "plan"
    )
    at = plan_done.recorded_at.astimezone(UTC).isoformat()
    path = f"/api/v1/jobs/{made.finished_job}"

    view = await get(client, path, user.headers, as_of=at)

    assert view["status"] == "running"
    assert [p["status"] for p in view["phases"]] == ["completed", "pending"]
    assert view["current_phase"] == "build"
    assert [line["line"] for line in view["output_tail"]] == ["plan 1", "plan 2"]
    assert view["cost"] == {"tokens": 10, "usd": 0.25}
    assert view["version"] == plan_done.version
    assert view["as_of"]["time"] is not None and view["as_of"]["position"] is None
    before = (plan_done.recorded_at - timedelta(microseconds=1)).astimezone(UTC).isoformat()
    earlier = await get(client, path, user.headers, as_of=before)
    assert [p["status"] for p in earlier["phases"]] == ["running", "pending"]


async def test_before_it_existed_a_project_or_job_is_not_found(
    client: Client, node: LogNode, user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    first = (await node.store.read_stream(f"project-{made.finished_project}"))[0]
    assert first.position is not None
    job_first = (await node.store.read_stream(f"job-{made.finished_job}"))[0]
    assert job_first.position is not None

    for path, position in (
        (f"/api/v1/projects/{made.finished_project}", first.position - 1),
        (f"/api/v1/jobs/{made.finished_job}", job_first.position - 1),
        (f"/api/v1/projects/{made.finished_project}", 0),
    ):
        resp = await client.get(path, params={"as_of": str(position)}, headers=user.headers)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == "NOT_FOUND"


async def test_another_users_project_and_job_are_not_found_at_any_point(
    client: Client,
    node: LogNode,
    user: Any,
    other_user: Any,
    auditor: Any,
    history: Callable[..., Any],
) -> None:
    made = await history(user)
    head = await node.store.head()

    for path in (f"/api/v1/projects/{made.finished_project}", f"/api/v1/jobs/{made.finished_job}"):
        for as_of in (str(head), "2999-01-01T00:00:00Z"):
            resp = await client.get(path, params={"as_of": as_of}, headers=other_user.headers)
            assert resp.status == 404
        resp = await client.get(path, params={"as_of": str(head)}, headers=auditor.headers)
        assert resp.status == 200


async def test_a_malformed_as_of_is_refused(
    client: Client, user: Any, history: Callable[..., Any]
) -> None:
    made = await history(user)
    for as_of in ("", "yesterday", "-3", "2026-01-01T00:00:00", "1.5"):
        for path in (
            f"/api/v1/projects/{made.finished_project}",
            f"/api/v1/jobs/{made.finished_job}",
        ):
            resp = await client.get(path, params={"as_of": as_of}, headers=user.headers)
            assert resp.status == 422, (path, as_of)
            assert (await resp.json())["error"]["details"]["field"] == "as_of"
