"""Commands on projects: create, update, discuss, ready, execute, pause, resume, cancel, archive,
unarchive."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from uuid import UUID

import attrs

from helix.auth.sealing import Sealer
from helix.config import Settings
from helix.domain import job, project
from helix.domain.job import JobPriority, JobState, Waiting
from helix.domain.project import MessageRole, PhaseSpec, ProjectState, ProjectStatus
from helix.domain.project.commands import DEFAULT_PROJECT_TYPE
from helix.domain.project.commands import Command as ProjectCommand
from helix.errors import RateLimited, ValidationError
from helix.services import phase_commands, templates
from helix.services.caller import Caller
from helix.services.phase_secrets import PhaseDraft, seal_plan
from helix.services.unit import PROJECT, Tx, Writer
from projections import projects as projects_model
from projections import workers as workers_model

DISCUSSION_NAME_CHARS = 60
RUN_STATUSES = frozenset({ProjectStatus.RUNNING, ProjectStatus.PAUSED})


@attrs.frozen(kw_only=True)
class Execution:
    project: ProjectState
    job: JobState
    # A run just started that no registered worker, online or not, could ever claim: why.
    never_runs: Waiting | None = None


def _draft_name(content: str) -> str:
    first = " ".join(content.split())
    if len(first) <= DISCUSSION_NAME_CHARS:
        return first or "Untitled discussion"
    return first[: DISCUSSION_NAME_CHARS - 1].rstrip() + "…"


Plan = Sequence[PhaseSpec | PhaseDraft]


class ProjectService:
    def __init__(self, writer: Writer, settings: Settings, sealer: Sealer | None = None) -> None:
        self.writer = writer
        self.settings = settings
        self.sealer = sealer

    def _plan(self, phases: Plan | None, template: str | None) -> Plan:
        """The phases given, or a named template's, or (given neither) the default one's."""
        if phases is not None and template is not None:
            raise ValidationError("give either phases or a template, not both", field="template")
        return tuple(phases) if phases is not None else templates.resolve(self.settings, template)

    async def _create(
        self,
        tx: Tx,
        *,
        name: str,
        description: str,
        project_type: str | None,
        phases: Plan,
        max_job_duration: float | None = None,
    ) -> ProjectState:
        project_id = uuid.uuid4()
        plan = seal_plan(self.sealer, project_id, phases)
        phase_commands.check(self.settings, tx.caller, plan)
        owner = tx.caller.user_id
        await projects_model.lock_owner(tx.conn, owner)
        active = await projects_model.count_active(tx.conn, owner)
        self._check_room(active)
        command = project.CreateProject(
            project_id=project_id,
            name=name,
            owner=owner,
            description=description,
            project_type=project_type or DEFAULT_PROJECT_TYPE,
            phases=plan,
            max_job_duration_s=max_job_duration,
            at=tx.at,
        )
        return await tx.decide_project(project_id, command)

    async def create(
        self,
        caller: Caller,
        *,
        name: str,
        description: str = "",
        project_type: str | None = None,
        phases: Plan | None = None,
        template: str | None = None,
        max_job_duration: float | None = None,
    ) -> ProjectState:
        """Create a project with the given phases (an empty plan is a plan), or a named
        template's, or (given neither) the configured default template's; with
        `max_job_duration`, its jobs' own duration limit in seconds."""
        plan = self._plan(phases, template)

        async def work(tx: Tx) -> ProjectState:
            return await self._create(
                tx,
                name=name,
                description=description,
                project_type=project_type,
                phases=plan,
                max_job_duration=max_job_duration,
            )

        return await self.writer.run(caller, work)

    async def update(
        self,
        caller: Caller,
        project_id: UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        project_type: str | None = None,
        phases: Plan | None = None,
        max_job_duration: float | None = None,
    ) -> ProjectState:
        async def work(tx: Tx) -> ProjectState:
            await tx.visible_project(project_id)
            state = await tx.decide_project(
                project_id,
                project.UpdateProject(
                    name=name,
                    description=description,
                    project_type=project_type,
                    max_job_duration_s=max_job_duration,
                    at=tx.at,
                ),
            )
            if phases is not None:
                plan = seal_plan(self.sealer, project_id, phases)
                phase_commands.check(self.settings, tx.caller, plan)
                state = await tx.decide_project(
                    project_id, project.PlanPhases(phases=plan, at=tx.at)
                )
            return state

        return await self.writer.run(caller, work)

    async def _simple(
        self, caller: Caller, project_id: UUID, command: ProjectCommand
    ) -> ProjectState:
        async def work(tx: Tx) -> ProjectState:
            await tx.visible_project(project_id)
            return await tx.decide_project(project_id, command)

        return await self.writer.run(caller, work)

    async def archive(self, caller: Caller, project_id: UUID) -> ProjectState:
        return await self._simple(caller, project_id, project.ArchiveProject(at=self.writer.now()))

    async def unarchive(self, caller: Caller, project_id: UUID) -> ProjectState:
        """Bring an archived project back; it counts against its owner's project limit again."""

        async def work(tx: Tx) -> ProjectState:
            state = await tx.visible_project(project_id)
            if state.archived:
                await projects_model.lock_owner(tx.conn, state.owner)
                self._check_room(await projects_model.count_active(tx.conn, state.owner))
            return await tx.decide_project(project_id, project.UnarchiveProject(at=tx.at))

        return await self.writer.run(caller, work)

    def _check_room(self, active: int) -> None:
        limit = self.settings.max_projects_per_user
        if active >= limit:
            raise RateLimited(
                f"project limit reached: a user may have at most {limit} projects "
                "(archive one to make room)",
                limit=limit,
                current=active,
            )

    async def mark_ready(self, caller: Caller, project_id: UUID) -> ProjectState:
        return await self._simple(caller, project_id, project.MarkReady(at=self.writer.now()))

    async def pause(
        self, caller: Caller, project_id: UUID, reason: str = "", *, now: bool = False
    ) -> ProjectState:
        """Pause the project and hold its run's job before its next phase (with `now`, its
        running phase is stopped and runs again on resume), in one transaction."""

        async def work(tx: Tx) -> ProjectState:
            await tx.visible_project(project_id)
            command = project.PauseProject(reason=reason or "paused", at=tx.at)
            state = await tx.decide_project(project_id, command)
            pause = job.PauseJob(by=tx.caller.actor, reason=reason or "paused", now=now, at=tx.at)
            await self._run_job(tx, state, pause)
            return state

        return await self.writer.run(caller, work)

    async def resume(self, caller: Caller, project_id: UUID, reason: str = "") -> ProjectState:
        """Resume the project; its paused job is queued again for any worker to claim."""

        async def work(tx: Tx) -> ProjectState:
            await tx.visible_project(project_id)
            command = project.ResumeProject(reason=reason or "resumed", at=tx.at)
            state = await tx.decide_project(project_id, command)
            await self._run_job(tx, state, job.ResumeJob(by=tx.caller.actor, at=tx.at))
            return state

        return await self.writer.run(caller, work)

    async def _run_job(self, tx: Tx, state: ProjectState, command: job.Command) -> None:
        """Decide `command` on the job of the project's current run, if it has one going."""
        if state.latest_job_id is None or state.status not in RUN_STATUSES:
            return
        current = await tx.job(state.latest_job_id)
        if current.exists and not current.is_terminal:
            await tx.decide_job(state.latest_job_id, command)

    async def post_message(
        self,
        caller: Caller,
        project_id: UUID,
        *,
        content: str,
        role: MessageRole = MessageRole.USER,
        author: str | None = None,
    ) -> ProjectState:
        async def work(tx: Tx) -> ProjectState:
            await tx.visible_project(project_id)
            return await self._post(tx, project_id, content, role, author)

        return await self.writer.run(caller, work)

    async def post_and_run(
        self,
        caller: Caller,
        project_id: UUID,
        *,
        content: str,
        role: MessageRole = MessageRole.USER,
        author: str | None = None,
        model: str | None = None,
        priority: JobPriority = JobPriority.NORMAL,
    ) -> Execution:
        """Post a message and start a new run of the project, in one transaction: a project
        that cannot start a run (one is running or paused, or it is not ready) gets neither."""

        async def work(tx: Tx) -> Execution:
            state = await tx.visible_project(project_id)
            message = self._message(tx, content, role, author)
            return await self._start_run(
                tx, state, message, start_phase=None, model=model, priority=priority
            )

        return await self.writer.run(caller, work)

    async def _post(
        self, tx: Tx, project_id: UUID, content: str, role: MessageRole, author: str | None
    ) -> ProjectState:
        return await tx.decide_project(project_id, self._message(tx, content, role, author))

    @staticmethod
    def _message(
        tx: Tx, content: str, role: MessageRole, author: str | None
    ) -> project.PostMessage:
        return project.PostMessage(
            message_id=uuid.uuid4(),
            role=role,
            author=author or tx.caller.name,
            content=content,
            at=tx.at,
        )

    async def discuss(
        self,
        caller: Caller,
        *,
        content: str,
        project_id: UUID | None = None,
        role: MessageRole = MessageRole.USER,
        author: str | None = None,
        name: str | None = None,
        project_type: str | None = None,
    ) -> ProjectState:
        """Post to a project's discussion; without a project, start one as a draft (which the
        first message moves to `discussing`)."""

        async def work(tx: Tx) -> ProjectState:
            if project_id is None:
                # One transaction: a message the decider refuses leaves no project behind.
                state = await self._create(
                    tx,
                    name=name or _draft_name(content),
                    description="",
                    project_type=project_type,
                    phases=templates.resolve(self.settings, None),
                )
                assert state.id is not None
                target = state.id
            else:
                await tx.visible_project(project_id)
                target = project_id
            return await self._post(tx, target, content, role, author)

        return await self.writer.run(caller, work)

    async def execute(
        self,
        caller: Caller,
        project_id: UUID,
        *,
        start_phase: str | None = None,
        model: str | None = None,
        priority: JobPriority = JobPriority.NORMAL,
    ) -> Execution:
        """Start a run: the project moves to `running` and its job is queued in one transaction.
        Jobs beyond the owner's running limit wait in the queue (the limit applies at claim)."""

        async def work(tx: Tx) -> Execution:
            state = await tx.visible_project(project_id)
            return await self._start_run(
                tx, state, start_phase=start_phase, model=model, priority=priority
            )

        return await self.writer.run(caller, work)

    async def _start_run(
        self,
        tx: Tx,
        state: ProjectState,
        *commands: ProjectCommand,
        start_phase: str | None,
        model: str | None,
        priority: JobPriority = JobPriority.NORMAL,
    ) -> Execution:
        """Decide `commands` and a new run on the project, and queue the run's job."""
        assert state.id is not None
        project_id = state.id
        phase_commands.check(self.settings, tx.caller, state.phases)
        job_id = uuid.uuid4()
        state = await tx.decide(
            PROJECT, project_id, *commands, project.StartRun(job_id=job_id, at=tx.at)
        )
        queued = await tx.decide_job(
            job_id,
            job.QueueJob(
                job_id=job_id,
                project_id=project_id,
                owner=state.owner,
                phases=state.phases,
                requested_by=tx.caller.actor,
                start_phase=start_phase,
                model=model,
                max_attempts=self.settings.job_max_attempts,
                max_duration_s=state.max_job_duration_s or self.settings.max_job_duration,
                priority=priority,
                at=tx.at,
            ),
        )
        offers = await workers_model.offers(tx.conn, online=False)
        never = job.unmet(job.needs(queued.phases), offers, "registered")
        return Execution(project=state, job=queued, never_runs=never)

    async def quick_action(
        self,
        caller: Caller,
        *,
        prompt: str,
        phases: Plan | None = None,
        template: str | None = None,
        model: str | None = None,
        name: str | None = None,
        priority: JobPriority = JobPriority.NORMAL,
    ) -> Execution:
        """Create a project from a prompt (its description and first message; its name, if
        not given, from the prompt's start), mark it ready and run it: one transaction, so a
        refusal at any step leaves nothing behind."""
        plan = self._plan(phases, template)

        async def work(tx: Tx) -> Execution:
            state = await self._create(
                tx,
                name=name or _draft_name(prompt),
                description=prompt,
                project_type=None,
                phases=plan,
            )
            return await self._start_run(
                tx,
                state,
                self._message(tx, prompt, MessageRole.USER, None),
                project.MarkReady(at=tx.at),
                start_phase=None,
                model=model,
                priority=priority,
            )

        return await self.writer.run(caller, work)

    async def cancel(self, caller: Caller, project_id: UUID, reason: str = "") -> Execution:
        """Cancel the current run. A queued job is cancelled at once (and the project is ready
        again); a running one once its worker acknowledges."""

        async def work(tx: Tx) -> Execution:
            state = await tx.visible_project(project_id)
            current = state.latest_job_id
            if current is not None and state.status is ProjectStatus.READY:
                # Cancelled already: the project is ready again with that job as its last run.
                return Execution(project=state, job=await tx.job(current))
            if current is None or state.status not in RUN_STATUSES:
                # Let the decider refuse with the project's current state.
                await tx.decide_project(
                    project_id, project.CancelRun(job_id=current or uuid.UUID(int=0), at=tx.at)
                )
                raise AssertionError("unreachable: a project without a run cannot cancel it")
            command = job.RequestCancel(
                by=tx.caller.actor, reason=reason or "cancelled by request", at=tx.at
            )
            cancelled = await tx.decide_job(current, command)
            return Execution(project=await tx.project(project_id), job=cancelled)

        return await self.writer.run(caller, work)
