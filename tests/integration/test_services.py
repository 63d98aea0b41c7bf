"""The service layer against a real database: commands append events, the inline read models
follow in the same transaction, and a project's status follows its jobs."""

from __future__ import annotations

import uuid

import pytest

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import job
from helix.domain.job import OutputStream
from helix.domain.project import MessageRole, PhaseSpec
from helix.errors import InvalidTransition, NotFound, RateLimited, ValidationError
from helix.services import Caller, Services
from tests.support import RegisteredWorker

ALICE = Caller(user_id="alice-id", name="alice", actor="user:alice-id", source="127.0.0.1")
BOB = Caller(user_id="bob-id", name="bob", actor="user:bob-id")
ADMIN = Caller(user_id="admin-id", name="root", actor="user:admin-id", sees_everything=True)
PLAN = (PhaseSpec(name="plan"), PhaseSpec(name="build", command=("make",)))


async def ready_project(services: Services, caller: Caller = ALICE) -> uuid.UUID:
    state = await services.projects.create(caller, name="demo", phases=PLAN)
    assert state.id is not None
    await services.projects.mark_ready(caller, state.id)
    return state.id


async def run_job_to_the_end(services: Services, job_id: uuid.UUID, *, fail: bool = False) -> None:
    worker = await RegisteredWorker.register(services.workers)
    token = (await worker.claim_job(job_id)).fencing_token
    now = services.projects.writer.now()
    steps: list[job.WorkerReport] = []
    for phase in ("plan", "build"):
        steps += [
            job.StartPhase(fencing_token=token, phase=phase, at=now),
            job.RecordOutput(
                fencing_token=token, phase=phase, stream=OutputStream.STDOUT,
                lines=(f"{phase} 1", f"{phase} 2"), at=now,
            ),
        ]  # fmt: skip
        if fail and phase == "build":
            steps += [
                job.FailPhase(fencing_token=token, phase=phase, error="boom", at=now),
                job.FailJob(fencing_token=token, error="boom", at=now),
            ]
            await worker.report_each(job_id, steps)
            return
        steps.append(job.CompletePhase(fencing_token=token, phase=phase, at=now))
    steps.append(job.CompleteJob(fencing_token=token, at=now))
    await worker.report_each(job_id, steps)


async def test_a_created_project_is_readable_at_once_with_its_plan(services: Services) -> None:
    state = await services.projects.create(ALICE, name="demo", phases=PLAN, project_type="web")
    assert state.id is not None

    view = await services.queries.project(ALICE, state.id)

    assert view["name"] == "demo"
    assert view["status"] == "draft"
    assert view["project_type"] == "web"
    assert [p["name"] for p in view["phases"]] == ["plan", "build"]
    assert view["phases"][1]["capabilities"] == ["shell"]
    assert view["latest_job"] is None


async def test_events_name_the_actor_request_and_source(services: Services, node: LogNode) -> None:
    state = await services.projects.create(ALICE, name="demo")
    assert state.id is not None
    events = await node.store.read_stream(f"project-{state.id}")
    assert events[0].metadata["actor"] == "user:alice-id"
    assert events[0].metadata["request_id"] == ALICE.request_id
    assert events[0].metadata["source"] == "127.0.0.1"


async def test_executing_queues_a_job_and_the_project_follows_it_to_completion(
    services: Services,
) -> None:
    project_id = await ready_project(services)
    run = await services.projects.execute(ALICE, project_id, model="gpt")
    assert run.job.id is not None
    assert (await services.queries.project(ALICE, project_id))["status"] == "running"
    assert (await services.queries.job(ALICE, run.job.id))["status"] == "queued"

    await run_job_to_the_end(services, run.job.id)

    project_view = await services.queries.project(ALICE, project_id)
    job_view = await services.queries.job(ALICE, run.job.id)
    assert project_view["status"] == "completed"
    assert project_view["latest_job"]["status"] == "completed"
    assert job_view["progress"] == 100
    assert [p["status"] for p in job_view["phases"]] == ["completed", "completed"]
    assert [line["line"] for line in job_view["output_tail"]] == [
        "plan 1", "plan 2", "build 1", "build 2",
    ]  # fmt: skip
    output = await services.queries.output(ALICE, run.job.id, phase="build", after=0)
    assert [(line["n"], line["line_no"]) for line in output["lines"]] == [(3, 1), (4, 2)]


async def test_a_projects_run_ending_names_the_job_event_that_caused_it(
    services: Services, node: LogNode
) -> None:
    project_id = await ready_project(services)
    run = await services.projects.execute(ALICE, project_id)
    assert run.job.id is not None
    await run_job_to_the_end(services, run.job.id)

    job_events = await node.store.read_stream(f"job-{run.job.id}")
    project_events = await node.store.read_stream(f"project-{project_id}")
    finished = [e for e in project_events if e.data.get("to_status") == "completed"]
    assert len(finished) == 1
    assert job_events[-1].type == "job.completed"
    assert finished[0].metadata["causation_id"] == str(job_events[-1].event_id)
    # The worker's report caused both: one correlation, and the job event was caused by no event.
    assert finished[0].metadata["correlation_id"] == job_events[-1].metadata["correlation_id"]
    assert job_events[-1].metadata["causation_id"] is None
    assert {"actor", "request_id", "correlation_id", "causation_id", "source"} <= set(
        project_events[0].metadata
    )


async def test_a_failed_job_fails_its_project(services: Services) -> None:
    project_id = await ready_project(services)
    run = await services.projects.execute(ALICE, project_id)
    assert run.job.id is not None
    await run_job_to_the_end(services, run.job.id, fail=True)
    view = await services.queries.project(ALICE, project_id)
    assert view["status"] == "failed"
    assert view["latest_job"]["error"] == "boom"


async def test_cancelling_a_queued_run_makes_the_project_ready_again(services: Services) -> None:
    project_id = await ready_project(services)
    run = await services.projects.execute(ALICE, project_id)
    assert run.job.id is not None

    cancelled = await services.projects.cancel(ALICE, project_id)

    assert cancelled.job.status is job.JobStatus.CANCELLED
    assert (await services.queries.project(ALICE, project_id))["status"] == "ready"
    again = await services.jobs.cancel(ALICE, run.job.id)  # idempotent
    assert again.status is job.JobStatus.CANCELLED


async def test_another_users_project_is_not_found_and_admins_see_it(services: Services) -> None:
    project_id = await ready_project(services)
    with pytest.raises(NotFound):
        await services.queries.project(BOB, project_id)
    with pytest.raises(NotFound):
        await services.projects.execute(BOB, project_id)
    assert (await services.queries.project(ADMIN, project_id))["id"] == str(project_id)
    assert (await services.queries.projects(BOB))["total"] == 0


async def test_an_illegal_transition_is_refused_with_the_current_state(services: Services) -> None:
    state = await services.projects.create(ALICE, name="demo")
    assert state.id is not None
    with pytest.raises(InvalidTransition) as refused:
        await services.projects.pause(ALICE, state.id)
    assert refused.value.details["current_state"] == "draft"


async def test_creating_beyond_the_project_limit_is_refused(
    node: LogNode, settings: Settings
) -> None:
    services = Services.build(node.store, Settings(max_projects_per_user=2))
    first = await services.projects.create(ALICE, name="one")
    await services.projects.create(ALICE, name="two")
    with pytest.raises(RateLimited) as refused:
        await services.projects.create(ALICE, name="three")
    assert refused.value.details["limit"] == 2
    assert first.id is not None
    await services.projects.archive(ALICE, first.id)
    await services.projects.create(ALICE, name="three")  # archived ones do not count


async def test_jobs_beyond_the_running_limit_wait_in_the_queue(node: LogNode) -> None:
    services = Services.build(node.store, Settings(max_concurrent_jobs=1))
    jobs = []
    for _ in range(2):
        project_id = await ready_project(services)
        run = await services.projects.execute(ALICE, project_id)
        assert run.job.id is not None
        jobs.append(run.job.id)
    one = await RegisteredWorker.register(services.workers, "w1")
    two = await RegisteredWorker.register(services.workers, "w2")
    first = await one.claim_job(jobs[0])
    assert await two.claim() is None  # alice already runs her one job
    assert (await services.queries.job(ALICE, jobs[1]))["status"] == "queued"

    await services.jobs.cancel(ALICE, jobs[0])
    ack = job.AcknowledgeCancel(fencing_token=first.fencing_token, at=services.jobs.writer.now())
    assert (await one.report(jobs[0], ack)).status is job.JobStatus.CANCELLED
    claimed = await two.claim_job(jobs[1])
    assert claimed.status is job.JobStatus.RUNNING


async def test_discussing_without_a_project_starts_a_draft_in_discussion(
    services: Services,
) -> None:
    state = await services.projects.discuss(ALICE, content="Let us build a parser")
    assert state.id is not None
    await services.projects.post_message(
        ALICE, state.id, content="Sure.", role=MessageRole.ASSISTANT, author="helper"
    )
    view = await services.queries.project(ALICE, state.id)
    thread = await services.queries.messages(ALICE, state.id)
    assert view["status"] == "discussing"
    assert view["name"] == "Let us build a parser"
    assert [(m["seq"], m["role"], m["author"]) for m in thread["items"]] == [
        (1, "user", "alice"), (2, "assistant", "helper"),
    ]  # fmt: skip


async def test_a_bad_message_creates_no_project(services: Services, node: LogNode) -> None:
    with pytest.raises(ValidationError):
        await services.projects.discuss(ALICE, content="   ")
    assert (await services.queries.projects(ALICE))["total"] == 0
    assert await node.store.read_all(0) == []
