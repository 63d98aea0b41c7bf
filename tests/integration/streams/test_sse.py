"""Server-sent events over real HTTP: resume, job streams that end, headers, tokens, and
exactly-once delivery to many clients at once."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from streams_support import (
    EventStream,
    as_service_caller,
    data,
    events_of,
    new_project,
    positions,
    queued_job,
    run_job,
    settled,
)

from helix.bootstrap import LogNode
from helix.eventstore import ANY_VERSION, EncodedEvent
from helix.services import Services

Client = TestClient[Any, Any]


def tick(n: int, kind: str = "a") -> EncodedEvent:
    return EncodedEvent(type=f"test.{kind}", schema_version=1, data={"n": n})


async def head_settled(node: LogNode) -> int:
    return await settled(node.store.pool)


async def test_resuming_with_last_event_id_gets_exactly_the_missed_events_then_live_ones(
    client: Client, node: LogNode, admin: Any
) -> None:
    store = node.store
    await store.append("test-1", ANY_VERSION, [tick(n) for n in range(5)])
    seen = await head_settled(node)
    await store.append("test-1", ANY_VERSION, [tick(n) for n in range(5, 12)])
    missed_until = await head_settled(node)

    resp = await client.get(
        "/api/v1/events/stream", headers={**admin.headers, "Last-Event-ID": str(seen)}
    )
    stream = EventStream(resp)
    replay = await stream.until(lambda m: bool(m) and m[-1].event == "caught_up")
    await store.append("test-1", ANY_VERSION, [tick(n) for n in range(12, 15)])
    live = await stream.events(3)
    resp.close()

    assert positions(replay) == list(range(seen + 1, missed_until + 1))
    assert data(replay[-1]) == {"position": missed_until}
    assert positions(live) == [missed_until + 1, missed_until + 2, missed_until + 3]
    assert [m.event for m in live] == ["test.a"] * 3
    assert not any(m.event == "caught_up" for m in live)
    envelope = data(live[0])
    assert set(envelope) >= {
        "position", "event_id", "stream_id", "version", "type", "project_id", "data",
        "metadata", "recorded_at",
    }  # fmt: skip
    assert (envelope["stream_id"], envelope["data"]) == ("test-1", {"n": 12})


async def test_after_in_the_query_replays_like_last_event_id_and_the_header_wins(
    client: Client, node: LogNode, admin: Any
) -> None:
    await node.store.append("test-2", ANY_VERSION, [tick(n) for n in range(4)])
    head = await head_settled(node)

    resp = await client.get(
        f"/api/v1/events/stream?after={head - 4}",
        headers={**admin.headers, "Last-Event-ID": str(head - 1)},
    )
    got = await EventStream(resp).until(lambda m: bool(m) and m[-1].event == "caught_up")
    resp.close()
    resp = await client.get(f"/api/v1/events/stream?after={head - 4}", headers=admin.headers)
    from_query = await EventStream(resp).until(lambda m: bool(m) and m[-1].event == "caught_up")
    resp.close()

    assert positions(got) == [head]
    assert positions(from_query) == list(range(head - 3, head + 1))


async def test_an_event_stream_has_no_cache_headers_a_retry_hint_and_heartbeats(
    make_client: Callable[..., Awaitable[Client]], admin: Any
) -> None:
    client = await make_client(stream_heartbeat_interval=0.3)
    resp = await client.get("/api/v1/events/stream", headers=admin.headers)
    stream = EventStream(resp)
    first = await stream.next()
    while stream.comments == 0:
        await stream.next(comment=True)
    resp.close()

    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert "X-Request-ID" in resp.headers
    assert stream.parser.retry_ms == 2000
    assert first is not None and first.event == "caught_up"


async def test_a_job_stream_ends_with_done_after_the_job_completes(
    client: Client, services: Services, user: Any
) -> None:
    project = await new_project(services, user)
    job_id = await queued_job(services, user, project)

    resp = await client.get(f"/api/v1/stream/{job_id}", headers=user.headers)
    stream = EventStream(resp)
    first = await stream.events(1)
    await run_job(services, job_id)
    rest = await stream.until(lambda m: bool(m) and m[-1].event == "done")
    end = await stream.next()

    types = [m.event for m in events_of(first + rest)]
    assert types[0] == "job.queued"
    assert types[-1] == "job.completed"
    outputs = [data(m) for m in events_of(first + rest) if m.event == "job.phase_output"]
    assert outputs and all(
        (o["schema_version"], o["data"]["attempt"]) == (2, 1) for o in outputs
    ), outputs
    assert rest[-1].event == "done"
    assert data(rest[-1]) == {"job_id": str(job_id), "position": int(events_of(rest)[-1].id or 0)}
    assert end is None  # the server closed the stream


async def test_a_job_stream_resumed_at_or_after_its_end_is_no_content_and_types_only_filter(
    client: Client, services: Services, user: Any
) -> None:
    project = await new_project(services, user)
    job_id = await queued_job(services, user, project)
    await run_job(services, job_id)

    resp = await client.get(f"/api/v1/stream/{job_id}?type=job.phase_*", headers=user.headers)
    replay = await EventStream(resp).until(lambda m: bool(m) and m[-1].event == "done")
    whole = await EventStream(
        await client.get(f"/api/v1/stream/{job_id}", headers=user.headers)
    ).until(lambda m: bool(m) and m[-1].event == "done")
    end = int(events_of(whole)[-1].id or 0)  # the job's terminal event, the last one it sent
    # What an EventSource sends when it reconnects after `done`, and later resumes.
    again = [
        await client.get(f"/api/v1/stream/{job_id}", headers={**user.headers, **resume})
        for resume in ({"Last-Event-ID": str(end)}, {"Last-Event-ID": str(end + 50)})
    ]
    again.append(await client.get(f"/api/v1/stream/{job_id}?after={end}", headers=user.headers))
    before = await client.get(
        f"/api/v1/stream/{job_id}", headers={**user.headers, "Last-Event-ID": str(end - 1)}
    )
    rest = await EventStream(before).until(lambda m: bool(m) and m[-1].event == "done")
    followed = await client.get(
        f"/api/v1/stream/{job_id}?follow=true", headers={**user.headers, "Last-Event-ID": str(end)}
    )
    followed.close()

    assert {m.event.split(".")[0] for m in events_of(replay)} == {"job"}
    assert all(m.event.startswith("job.phase_") for m in events_of(replay))
    assert whole[-1].event == "done" and events_of(whole)[-1].event == "job.completed"
    assert [r.status for r in again] == [204, 204, 204]
    assert [await r.read() for r in again] == [b"", b"", b""]
    assert all("X-Request-ID" in r.headers for r in again)
    assert [m.event for m in rest] == ["job.completed", "done"]
    assert followed.status == 200  # following on, a client wants what comes after the end


async def test_a_job_stream_with_follow_keeps_going_after_the_end(
    client: Client, node: LogNode, services: Services, user: Any
) -> None:
    project = await new_project(services, user)
    job_id = await queued_job(services, user, project)
    await run_job(services, job_id)

    resp = await client.get(f"/api/v1/stream/{job_id}?follow=true", headers=user.headers)
    stream = EventStream(resp)
    got = await stream.until(lambda m: any(x.event == "job.completed" for x in m))
    await node.store.append(
        f"job-{job_id}", ANY_VERSION, [tick(1, "after_the_end")], project_id=project
    )
    got += await stream.until(lambda m: any(x.event == "test.after_the_end" for x in m))
    resp.close()

    assert [m.event for m in events_of(got)][-2:] == ["job.completed", "test.after_the_end"]
    assert not any(m.event == "done" for m in got)


async def test_a_user_streams_only_their_own_projects_and_user_stream_on_sse(
    client: Client, services: Services, node: LogNode, user: Any, other_user: Any, admin: Any
) -> None:
    mine = await new_project(services, user, "mine")
    theirs = await new_project(services, other_user, "theirs")
    after = await head_settled(node)
    streams = {
        who: await client.get(f"/api/v1/events/stream?after={after}", headers=c.headers)
        for who, c in (("user", user), ("other", other_user), ("admin", admin))
    }
    project_stream = await client.get(f"/api/v1/projects/{mine}/stream", headers=user.headers)
    await services.projects.update(as_service_caller(user), mine, description="changed")
    await services.projects.update(as_service_caller(other_user), theirs, description="changed")
    await node.store.append(f"user-{user.user_id}", ANY_VERSION, [tick(1, "mine")])
    await node.store.append(f"user-{other_user.user_id}", ANY_VERSION, [tick(1, "theirs")])
    got = {
        who: await EventStream(r).events(2 if who != "admin" else 4) for who, r in streams.items()
    }
    mine_only = await EventStream(project_stream).events(1)

    assert [(m.event, data(m)["stream_id"]) for m in events_of(got["user"])] == [
        ("project.updated", f"project-{mine}"),
        ("test.mine", f"user-{user.user_id}"),
    ]
    assert [data(m)["stream_id"] for m in events_of(got["other"])] == [
        f"project-{theirs}",
        f"user-{other_user.user_id}",
    ]
    assert len(events_of(got["admin"])) == 4
    assert [data(m)["project_id"] for m in events_of(mine_only)] == [str(mine)]
    for resp in [*streams.values(), project_stream]:
        resp.close()


async def test_another_users_project_or_job_stream_is_not_found(
    client: Client, services: Services, user: Any, other_user: Any, auditor: Any
) -> None:
    theirs = await new_project(services, other_user)
    job_id = await queued_job(services, other_user, theirs)

    for path in (f"/api/v1/projects/{theirs}/stream", f"/api/v1/stream/{job_id}"):
        resp = await client.get(path, headers=user.headers)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == "NOT_FOUND"
    resp = await client.get(f"/api/v1/stream/{uuid.uuid4()}", headers=user.headers)
    assert resp.status == 404
    resp = await client.get(f"/api/v1/stream/{job_id}", headers=auditor.headers)
    assert resp.status == 200
    resp.close()


async def test_streams_need_credentials_and_accept_a_stream_token_in_the_query(
    client: Client, admin: Any
) -> None:
    assert (await client.get("/api/v1/events/stream")).status == 401
    bad = await client.get("/api/v1/events/stream?access_token=nonsense")
    assert bad.status == 401
    assert (await client.post("/api/v1/stream-tokens")).status == 401

    minted = await client.post("/api/v1/stream-tokens", headers=admin.headers)
    body = await minted.json()
    resp = await client.get(f"/api/v1/events/stream?access_token={body['token']}")
    first = await EventStream(resp).next()
    resp.close()
    as_bearer = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {body['token']}"}
    )

    assert minted.status == 201
    assert body["expires_in"] == 300
    assert resp.status == 200 and first is not None and first.event == "caught_up"
    assert as_bearer.status == 401  # a stream token opens streams, nothing else


async def test_bad_after_or_type_is_a_validation_error(client: Client, admin: Any) -> None:
    for query in ("after=-1", "after=x", "type=job.%25", "type=a%20b"):
        resp = await client.get(f"/api/v1/events/stream?{query}", headers=admin.headers)
        assert resp.status in (400, 422), query
        assert (await resp.json())["error"]["code"] == "VALIDATION_ERROR"


async def test_twenty_sse_clients_with_mixed_filters_get_exactly_their_events_in_order(
    client: Client, node: LogNode, services: Services, user: Any, other_user: Any, admin: Any
) -> None:
    projects = {
        "user": await new_project(services, user),
        "other": await new_project(services, other_user),
    }
    start = await head_settled(node)
    rng = random.Random(7)
    callers = {"user": user, "other": other_user, "admin": admin}
    clients = []
    for i in range(20):
        who = rng.choice(list(callers))
        types = rng.choice(["", "test.a", "test.*", "project.*,test.b"])
        path = "/api/v1/events/stream"
        if i % 3 == 0 and who != "admin":
            path = f"/api/v1/projects/{projects[who]}/stream"
        query = f"?after={start}" + (f"&type={types}" if types else "")
        resp = await client.get(path + query, headers=callers[who].headers)
        clients.append((who, types, path, EventStream(resp)))

    async def writer(w: int) -> None:
        for n in range(15):
            owner = rng.choice(["user", "other"])
            await node.store.append(
                f"job-{uuid.uuid4()}",
                0,
                [tick(n, rng.choice("ab"))],
                project_id=projects[owner],
            )

    await asyncio.gather(*(writer(w) for w in range(3)))
    head = await head_settled(node)
    log = await node.store.read_all(start, 10_000)
    for who, types, path, stream in clients:
        wanted = [
            e.position
            for e in log
            if (who == "admin" or e.project_id == projects[who])
            and (path.endswith("events/stream") or e.project_id == projects[who])
            and _type_matches(types, e.type)
        ]
        got = await stream.until(lambda m, n=len(wanted): len(events_of(m)) >= n)
        assert positions(got) == wanted, (who, types, path)
        stream.resp.close()
    assert head == log[-1].position


def _type_matches(types: str, event_type: str) -> bool:
    if not types:
        return True
    from fnmatch import fnmatchcase

    return any(fnmatchcase(event_type, t) for t in types.split(","))
