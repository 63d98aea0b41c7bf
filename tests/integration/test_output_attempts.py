"""Output lines carry the attempt that wrote them; lines stored before attempts were recorded
(schema version 1) read as the first attempt's: decoded from the log and in the output read
model, as a rebuild makes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from helix.bootstrap import LogNode
from helix.domain.job import JobPhaseOutput, OutputStream
from helix.eventstore import EncodedEvent
from projections import output
from projections.rebuild import rebuild
from tests.support import settled


async def test_output_stored_before_attempts_were_recorded_reads_as_the_first_attempts(
    node: LogNode,
) -> None:
    job_id = uuid.uuid4()
    stream = f"job-{job_id}"
    as_an_older_helix_wrote_it = EncodedEvent(
        type="job.phase_output",
        schema_version=1,
        data={
            "job_id": str(job_id),
            "phase": "build",
            "stream": "stdout",
            "lines": ["old"],
            "first_line_no": 1,
            "at": "2026-01-01T00:00:00+00:00",
        },
    )
    retried = JobPhaseOutput(
        job_id=job_id,
        phase="build",
        stream=OutputStream.STDERR,
        lines=("new",),
        first_line_no=2,
        attempt=2,
        at=datetime.now(UTC),
    )
    await node.store.append(stream, 0, [as_an_older_helix_wrote_it, retried])
    await settled(node)

    first, second = await node.store.read_stream(stream)
    assert (first.schema_version, second.schema_version) == (1, 2)
    assert "attempt" not in first.data and second.data["attempt"] == 2
    assert node.store.decode(first).attempt == 1
    assert node.store.decode(second) == retried

    await rebuild(node.store, output.PROJECTION)
    assert node.pool is not None
    async with node.pool.acquire() as conn:
        rows = await output.page(conn, job_id, phase=None, after=0, limit=10)
    assert [(r["attempt"], r["line_no"], r["stream"], r["line"]) for r in rows] == [
        (1, 1, "stdout", "old"),
        (2, 2, "stderr", "new"),
    ]
