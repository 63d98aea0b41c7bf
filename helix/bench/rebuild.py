"""`helix bench rebuild`: projection rebuilds beside a raw decoded read of the same log.

It writes a log of projects (a discussion each) and jobs run to the end (phases with output,
cost and files), then times `helix projections rebuild` of each read model behind the REST API
against raw PostgreSQL: the same log paged by position with asyncpg (a keyset read, `position >
$1 ORDER BY position LIMIT n`) and every row decoded into its event, the least a rebuild has to
do. Both run in the same process on the same server, one after the other, so their ratio is
what the rebuild adds to reading.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import job, project
from helix.domain.job import OutputStream
from helix.domain.project import MessageRole, PhaseSpec
from helix.eventstore import EventStore, RecordedEvent
from projections import registry
from projections.rebuild import rebuild

AT = datetime(2026, 1, 1, tzinfo=UTC)
PLAN = (PhaseSpec(name="plan"), PhaseSpec(name="build", command=("make",)))
JOBS_PER_PROJECT = 5
RAW_PAGE = (
    "SELECT event_id, stream_id, stream_type, version, position, project_id, type, "
    "schema_version, data, metadata, recorded_at FROM events "
    "WHERE position > $1 AND position IS NOT NULL ORDER BY position LIMIT $2"
)
METADATA = {"actor": "bench", "source": "helix bench rebuild"}


@attrs.frozen
class Figures:
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def _project_events(pid: uuid.UUID) -> list[object]:
    state = project.INITIAL
    events: list[object] = []
    commands: list[Any] = [
        project.CreateProject(project_id=pid, name="bench", owner="bench", phases=PLAN, at=AT),
        *(
            project.PostMessage(
                message_id=uuid.uuid4(), role=MessageRole.USER, author="bench",
                content=f"message {n}", at=AT,
            )
            for n in range(2)
        ),
        project.MarkReady(at=AT),
    ]  # fmt: skip
    for command in commands:
        caused = project.decide(state, command)
        state = project.fold(caused, state)
        events += caused
    return events


def _job_events(pid: uuid.UUID) -> list[object]:
    """A job run to the end: claimed, each phase started, two batches of output, a cost, a
    file and its end, progress, and the job's end."""
    state = job.INITIAL
    events: list[object] = []

    def run(command: Any) -> None:
        nonlocal state
        caused = job.decide(state, command)
        state = job.fold(caused, state)
        events.extend(caused)

    run(job.QueueJob(
        job_id=uuid.uuid4(), project_id=pid, owner="bench", phases=PLAN, requested_by="bench",
        at=AT,
    ))  # fmt: skip
    run(job.ClaimJob(worker_id="bench-worker", at=AT))
    token = state.fencing_token
    for phase in PLAN:
        name = phase.name
        run(job.StartPhase(fencing_token=token, phase=name, at=AT))
        for batch in range(2):
            lines = tuple(f"{name} line {batch}.{n}" for n in range(5))
            run(job.RecordOutput(
                fencing_token=token, phase=name, stream=OutputStream.STDOUT, lines=lines, at=AT
            ))  # fmt: skip
        run(job.RecordCost(fencing_token=token, phase=name, tokens=100, usd=0.01, at=AT))
        run(job.RecordFile(
            fencing_token=token, phase=name, path=f"{name}.txt", size=10, sha256="ab" * 32, at=AT
        ))  # fmt: skip
        run(job.CompletePhase(fencing_token=token, phase=name, at=AT))
    run(job.ReportProgress(fencing_token=token, percent=90, at=AT))
    run(job.CompleteJob(fencing_token=token, at=AT))
    return events


async def write_log(store: EventStore, total: int) -> int:
    """At least `total` events, one append per stream; the number written."""
    written = 0
    while written < total:
        pid = uuid.uuid4()
        streams = [(project.stream_id(pid), _project_events(pid))]
        for _ in range(JOBS_PER_PROJECT):
            events = _job_events(pid)
            streams.append((job.stream_id(events[0].job_id), events))  # type: ignore[attr-defined]
        for stream, events in streams:
            await store.append(stream, 0, events, metadata=METADATA, project_id=pid)
            written += len(events)
    return written


async def raw_read(store: EventStore, page: int) -> Figures:
    """Page through the whole log by position and decode every row into its event."""
    started = time.perf_counter()
    position = rows = 0
    async with store.pool.acquire() as conn:
        while batch := await conn.fetch(RAW_PAGE, position, page):
            for row in batch:
                store.decode(RecordedEvent.from_row(row))
            rows += len(batch)
            position = batch[-1]["position"]
    return Figures("raw keyset read, decoded", rows, time.perf_counter() - started)


async def run(url: str, settings: Settings, *, events: int = 20_000, batch_size: int = 5000) -> int:
    node = LogNode(url, settings)
    await node.start()
    try:
        store = node.store
        written = await write_log(store, events)
        head = int(await store.pool.fetchval("SELECT count(*) FROM events"))
        if not await store.wait_for_position(head, timeout=300):
            raise RuntimeError("the sequencer did not position the log in time")
        await store.pool.execute("VACUUM ANALYZE events")
        raw = await raw_read(store, batch_size)
        rebuilt: list[Figures] = []
        for projection in registry.DOMAIN:
            report = await rebuild(store, projection, batch_size=batch_size)
            rebuilt.append(Figures(projection.name, report.events, report.seconds))
    finally:
        await node.stop()
    print(f"log: {written} events ({JOBS_PER_PROJECT} jobs per project); pages of {batch_size}")
    print(f"{'read or rebuild':<26} {'events':>8} {'seconds':>8} {'events/s':>10} {'ratio':>6}")
    print(f"{raw.name:<26} {raw.events:>8} {raw.seconds:>8.2f} {raw.rate:>10.0f} {1:>6.2f}")
    for f in rebuilt:
        ratio = f.rate / raw.rate if raw.rate else 0.0
        print(f"rebuild {f.name:<18} {f.events:>8} {f.seconds:>8.2f} {f.rate:>10.0f} {ratio:>6.2f}")
    overall = Figures("all", sum(f.events for f in rebuilt), sum(f.seconds for f in rebuilt))
    print(
        f"rebuild of every read model: {overall.events} events applied in {overall.seconds:.2f} "
        f"s, {overall.rate:.0f} events/s; raw decoded read {raw.rate:.0f} rows/s"
    )
    print(f"rebuild ratio: {overall.rate / raw.rate if raw.rate else 0.0:.2f}")
    return 0
