"""The tailer in-process: exact fan-out to many subscribers, bounded buffers with catch-up from
the database, and recovery from a lost connection, all against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Sequence
from fnmatch import fnmatchcase

import asyncpg
from streams_support import settled, tailer_at

from helix.access import Viewer, may_see
from helix.bootstrap import LogNode
from helix.eventstore import ANY_VERSION, EncodedEvent, EventStore, RecordedEvent
from helix.services import Caller as ServiceCaller
from helix.services import Services
from helix.streams import CaughtUp, Filter, Frame, Scope, Subscription, Tailer

ALICE = ServiceCaller(user_id="alice-id", name="alice", actor="user:alice-id")
BOB = ServiceCaller(user_id="bob-id", name="bob", actor="user:bob-id")
VIEWERS = [
    Viewer(user_id="alice-id"),
    Viewer(user_id="bob-id"),
    Viewer(user_id="root-id", sees_everything=True),
]
TYPES: list[tuple[str, ...]] = [(), ("test.a",), ("test.*",), ("test.?", "project.*")]


def tick(kind: str, n: int) -> EncodedEvent:
    return EncodedEvent(type=f"test.{kind}", schema_version=1, data={"n": n})


async def project_for(services: Services, owner: ServiceCaller) -> uuid.UUID:
    state = await services.projects.create(owner, name="p", phases=())
    assert state.id is not None
    return state.id


async def append(
    store: EventStore, stream_id: str, events: Sequence[EncodedEvent], project: uuid.UUID | None
) -> None:
    for attempt in itertools.count():
        try:
            await store.append(
                stream_id, ANY_VERSION, events, metadata={"actor": "test"}, project_id=project
            )
            return
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        ):
            if attempt > 50:
                raise
            await asyncio.sleep(0.1)  # a connection killed under the pool is replaced


async def drain(sub: Subscription, until: int) -> list[CaughtUp | Frame]:
    """Everything the subscription hands out until it is live and complete up to `until`."""
    got: list[CaughtUp | Frame] = []
    while not (sub.live and sub.buffered == 0 and sub.position >= until):
        batch = await asyncio.wait_for(sub.next(), 30)
        got.extend(batch.items)
    return got


def frames_of(items: Sequence[CaughtUp | Frame]) -> list[int]:
    return [i.position for i in items if isinstance(i, Frame)]


async def owners_by_project(pool: asyncpg.Pool) -> dict[uuid.UUID, str]:
    return {r["project_id"]: r["owner"] for r in await pool.fetch("SELECT * FROM projects")}


def expected(
    log: Sequence[RecordedEvent], owners: dict[uuid.UUID, str], f: Filter, after: int
) -> list[int]:
    """An independent statement of what a subscriber must get."""
    out = []
    for e in log:
        assert e.position is not None
        if e.position <= after:
            continue
        if f.scope.stream_id is not None and e.stream_id != f.scope.stream_id:
            continue
        if f.scope.kind == "project" and e.project_id != f.scope.id:
            continue
        if f.types and not any(fnmatchcase(e.type, t) for t in f.types):
            continue
        owner = owners.get(e.project_id) if e.project_id else None
        if may_see(f.viewer, e, owner):
            out.append(e.position)
    return out


async def test_two_hundred_subscribers_with_mixed_filters_each_get_exactly_their_events_in_order(
    node: LogNode, services: Services, tailer: Tailer
) -> None:
    store = node.store
    projects = [await project_for(services, ALICE), await project_for(services, BOB)]
    projects.append(await project_for(services, ALICE))
    jobs = [(uuid.uuid4(), p) for p in projects]
    start = await settled(store.pool)
    await store.wait_for_position(start, 10)
    rng = random.Random(5)
    scopes = [Scope.everything()] + [Scope.project(p) for p in projects]
    scopes += [Scope.job(j) for j, _ in jobs]
    subs: list[tuple[Subscription, Filter, int, bool]] = []
    for i in range(210):
        f = Filter(rng.choice(scopes), rng.choice(VIEWERS), rng.choice(TYPES))
        after = rng.choice([None, 0, max(start - 3, 0)])
        sub = tailer.subscribe(f, after)
        subs.append((sub, f, sub.position, i % 2 == 0))

    done = asyncio.Event()
    final: list[int] = []
    received: dict[int, list[CaughtUp | Frame]] = {i: [] for i in range(len(subs))}

    async def consume(i: int, sub: Subscription, eager: bool) -> None:
        if not eager:
            await done.wait()  # half of them do not read at all while the appends run
        while not (final and sub.live and sub.buffered == 0 and sub.position >= final[0]):
            batch = await sub.next()
            received[i].extend(batch.items)

    async def writer(w: int) -> None:
        for n in range(40):
            job_id, project = jobs[(w + n) % len(jobs)]
            kind = rng.choice("abc")
            if n % 7 == 0:
                await append(store, f"user-{VIEWERS[w % 2].user_id}", [tick(kind, n)], None)
            else:
                events = [tick(kind, n), tick("a", n)][: 1 + n % 2]
                await append(store, f"job-{job_id}", events, project)

    consumers = [
        asyncio.create_task(consume(i, sub, eager)) for i, (sub, _, _, eager) in enumerate(subs)
    ]
    await asyncio.gather(*(writer(w) for w in range(4)))
    head = await settled(store.pool)
    await tailer_at(tailer, head)
    final.append(head)
    done.set()
    for sub, *_ in subs:
        sub.poke()
    _, pending = await asyncio.wait(consumers, timeout=60)
    assert not pending, f"{len(pending)} subscribers never completed"

    log = await store.read_all(0, 100_000)
    owners = await owners_by_project(store.pool)
    for i, (_, f, after, _) in enumerate(subs):
        items = received[i]
        assert frames_of(items) == expected(log, owners, f, after), (i, f.scope, f.types)
        assert sum(isinstance(x, CaughtUp) for x in items) == 1
    assert any(sub.lagged for sub, *_ in subs), "some subscribers went through catch-up"


async def test_a_subscriber_that_stops_reading_stays_bounded_and_later_gets_everything(
    node: LogNode, tailer: Tailer
) -> None:
    store = node.store
    sub = tailer.subscribe(Filter(Scope.everything(), VIEWERS[2]))
    first = sub.position
    largest = 0
    for n in range(30):
        await append(store, "bench-slow", [tick("a", n * 10 + k) for k in range(10)], None)
        largest = max(largest, tailer.buffered())
    head = await settled(store.pool)
    await tailer_at(tailer, head)
    largest = max(largest, tailer.buffered())

    assert head - first == 300
    assert sub.buffered <= sub.capacity + 1  # the caught-up marker may sit beside a full buffer
    assert largest <= sub.capacity + 1
    assert not sub.live and sub.lagged == 1

    items = await drain(sub, head)

    assert frames_of(items) == list(range(first + 1, head + 1))
    assert tailer.catch_up_reads >= 1  # the recent events did not reach back far enough


async def test_a_subscriber_a_little_behind_rejoins_from_recent_events_without_the_database(
    node: LogNode, tailer: Tailer
) -> None:
    store = node.store
    sub = tailer.subscribe(Filter(Scope.everything(), VIEWERS[2]))
    first = sub.position
    for n in range(6):
        await append(store, "bench-recent", [tick("a", n * 10 + k) for k in range(10)], None)
    head = await settled(store.pool)
    await tailer_at(tailer, head)

    items = await drain(sub, head)

    assert frames_of(items) == list(range(first + 1, head + 1))
    assert sub.lagged == 1
    assert tailer.catch_up_reads == 0


async def test_killing_the_listen_connection_and_the_pool_leaves_no_gap_in_a_stream(
    node: LogNode, tailer: Tailer, database_url: str
) -> None:
    store = node.store
    sub = tailer.subscribe(Filter(Scope.everything(), VIEWERS[2]))
    first = sub.position
    await append(store, "bench-kill", [tick("a", n) for n in range(5)], None)
    head = await settled(store.pool)
    got = frames_of(await drain(sub, head))

    admin = await asyncpg.connect(database_url)
    try:
        for application in ("helix-listen", "helix"):
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = $1",
                application,
            )
            assert killed >= 1
            await append(store, "bench-kill", [tick("b", n) for n in range(5)], None)
    finally:
        await admin.close()
    head = await settled(store.pool)
    got += frames_of(await drain(sub, head))

    assert got == list(range(first + 1, head + 1))
    assert head - first == 15


async def test_the_tailer_learns_project_owners_from_project_created_without_a_query(
    node: LogNode, services: Services, tailer: Tailer
) -> None:
    sub = tailer.subscribe(Filter(Scope.everything(), VIEWERS[0]))
    project = await project_for(services, ALICE)
    head = await settled(node.store.pool)

    items = await drain(sub, head)

    assert [i.event.type for i in items if isinstance(i, Frame)] == ["project.created"]
    assert tailer.ownership.cached(project) == "alice-id"
    assert tailer.ownership.lookups == 0
