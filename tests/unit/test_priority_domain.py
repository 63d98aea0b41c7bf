"""A job's priority in the domain: on the queued event and the state, its rank, and the events
recorded before priorities existed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from helix.domain import job
from helix.domain.job import JobPriority, JobQueued
from helix.domain.project import PhaseSpec
from helix.eventstore import RecordedEvent
from helix.serialization import default_registry

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_queued_job_carries_its_priority_into_its_state() -> None:
    command = job.QueueJob(
        job_id=uuid.uuid4(), project_id=uuid.uuid4(), owner="o", requested_by="user:o",
        phases=(PhaseSpec(name="plan"),), priority=JobPriority.HIGH, at=AT,
    )  # fmt: skip
    events = job.decide(job.INITIAL, command)

    assert isinstance(events[0], JobQueued) and events[0].priority is JobPriority.HIGH
    assert job.fold(events).priority is JobPriority.HIGH


def test_ranks_order_the_priorities_and_name_them_back() -> None:
    ranks = [p.rank for p in (JobPriority.LOW, JobPriority.NORMAL, JobPriority.HIGH)]
    assert ranks == [0, 1, 2] and JobPriority.CRITICAL.rank == 3
    assert all(JobPriority.of_rank(p.rank) is p for p in JobPriority)


def test_a_job_queued_before_priorities_reads_as_normal() -> None:
    registry = default_registry()
    queued = JobQueued(
        job_id=uuid.uuid4(), project_id=uuid.uuid4(), owner="o", phases=(), start_phase=None,
        model=None, requested_by="user:o", max_attempts=3, at=AT,
    )  # fmt: skip
    encoded = registry.encode(queued)
    old = {k: v for k, v in encoded.data.items() if k != "priority"}
    recorded = RecordedEvent(
        event_id=uuid.uuid4(), stream_id=f"job-{queued.job_id}", stream_type="job", version=1,
        position=1, project_id=None, type=encoded.type, schema_version=encoded.schema_version,
        data=old, metadata={}, recorded_at=AT,
    )  # fmt: skip

    assert registry.decode(recorded).priority is JobPriority.NORMAL
