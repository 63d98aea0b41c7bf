"""Projects: create, list, show, update, archive, unarchive, and drive their runs."""

from __future__ import annotations

import json
from typing import Any

import attrs
from aiohttp import web

from helix.api.handlers import (
    PAGING,
    as_of,
    caller,
    choice,
    documented,
    listing,
    offset_listing,
    optional_body,
    paging,
    path_id,
    position,
    reply,
    services,
    strings,
    validated_body,
)
from helix.api.requests import choice_query, int_query, query_params
from helix.api.scopes import require_run_scope
from helix.api.validation import NOT_BLANK, Setting, object_body
from helix.appkeys import STORE
from helix.audit import time_travel
from helix.domain.job import JobPriority
from helix.domain.job.decider import MAX_MODEL_CHARS
from helix.domain.project import EnvValue, PhaseSpec, ProjectStatus, SealedSecret
from helix.domain.project.decider import (
    ENV_NAME_PATTERN,
    MAX_CAPABILITIES,
    MAX_CAPABILITY_CHARS,
    MAX_COMMAND_ARGS,
    MAX_DESCRIPTION_CHARS,
    MAX_DURATION_S,
    MAX_NAME_CHARS,
    MAX_PHASE_NAME_CHARS,
    MAX_PHASES,
    MAX_PROJECT_TYPE_CHARS,
    MAX_PROMPT_CHARS,
    MAX_REASON_CHARS,
    MAX_SEALED_CHARS,
)
from helix.errors import ValidationError
from helix.services import Execution, templates
from helix.services.phase_secrets import MAX_SECRET_CHARS, PhaseDraft
from helix.services.views import stream_url

routes = web.RouteTableDef()
OR_NULL = ["string", "null"]
# A quick action's `metadata`, recorded with its events: a small JSON object.
MAX_METADATA_KEYS = 50
MAX_METADATA_CHARS = 8_192

# An env value: plain text; `{"secret": "…"}`, a value to seal for the project (never shown
# again); or `{"sealed": "…"}`, a secret sealed earlier, sent back as the project shows it.
# An env value: a string, a secret to seal ({"secret": …}) or one sealed already
# ({"sealed": …}, as a view shows it), never both.
ENV_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        *(
            {
                "type": "object",
                "required": [kind],
                "additionalProperties": False,
                "properties": {
                    kind: strings(min_length=1, max_length=limit),
                    "redacted": {"type": "boolean"},
                },
            }
            for kind, limit in (("secret", MAX_SECRET_CHARS), ("sealed", MAX_SEALED_CHARS))
        ),
    ],
    "description": 'a string, {"secret": …} or {"sealed": …}',
}
# A command's first word names its program: it may not be blank.
PHASE: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": strings(min_length=1, max_length=MAX_PHASE_NAME_CHARS),
        "command": {
            "type": ["array", "null"],
            "prefixItems": [{"type": "string", "pattern": NOT_BLANK}],
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": MAX_COMMAND_ARGS,
        },
        "timeout_s": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "prompt": {**strings(min_length=1, max_length=MAX_PROMPT_CHARS), "type": OR_NULL},
        "capabilities": {
            "type": "array",
            "items": strings(min_length=1, max_length=MAX_CAPABILITY_CHARS),
            "maxItems": MAX_CAPABILITIES,
        },
        "env": {
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": ENV_VALUE,
        },
    },
}
PROJECT_FIELDS: dict[str, Any] = {
    "name": strings(min_length=1, max_length=MAX_NAME_CHARS),
    "description": strings(max_length=MAX_DESCRIPTION_CHARS),
    "project_type": strings(min_length=1, max_length=MAX_PROJECT_TYPE_CHARS),
    "phases": {"type": "array", "items": PHASE, "maxItems": MAX_PHASES},
    # Seconds a job may run before it is failed; on update, 0 clears it.
    "max_job_duration": {"type": "number", "minimum": 0, "maximum": MAX_DURATION_S},
}
# A configured template's name (HELIX_PHASE_TEMPLATES, or the built-in ones).
TEMPLATE_NAME = {
    "type": "string",
    "enum": Setting("phase_templates", read=templates.names),
}
CREATE = object_body(
    {**PROJECT_FIELDS, "template": TEMPLATE_NAME},
    required=["name"],
    exclusive=["phases", "template"],
)
# A plan, once changed, has a phase (a project is created without one, or with a template's).
UPDATE = object_body({**PROJECT_FIELDS, "phases": {**PROJECT_FIELDS["phases"], "minItems": 1}})
# How soon the run's job is claimed (default normal; see the claim order in the README).
PRIORITY = choice(JobPriority)
EXECUTE = object_body(
    {
        "start_phase": {**strings(min_length=1, max_length=MAX_PHASE_NAME_CHARS), "type": OR_NULL},
        "model": {**strings(min_length=1, max_length=MAX_MODEL_CHARS), "type": OR_NULL},
        "priority": PRIORITY,
    }
)
QUICK_ACTION = object_body(
    {
        "prompt": strings(min_length=1, max_length=MAX_DESCRIPTION_CHARS),
        "phases": {**PROJECT_FIELDS["phases"], "minItems": 1},
        "template": TEMPLATE_NAME,
        "model": strings(min_length=1, max_length=MAX_MODEL_CHARS),
        "priority": PRIORITY,
        "name": PROJECT_FIELDS["name"],
        "metadata": {"type": "object", "maxProperties": MAX_METADATA_KEYS},
    },
    required=["prompt"],
    exclusive=["phases", "template"],
)
REASON = object_body({"reason": strings(max_length=MAX_REASON_CHARS)})
PAUSE = object_body({"reason": strings(max_length=MAX_REASON_CHARS), "now": {"type": "boolean"}})
PHASE_COMMANDS_REFUSED = "a phase command that HELIX_PHASE_COMMANDS does not allow the caller"


def _draft(raw: dict[str, Any], index: int) -> PhaseDraft:
    env: dict[str, EnvValue] = {}
    secrets: dict[str, str] = {}
    for name, value in raw.get("env", {}).items():
        if isinstance(value, str):
            env[name] = value
        elif "secret" in value:
            secrets[name] = value["secret"]
        else:
            env[name] = SealedSecret(sealed=value["sealed"])
    spec = PhaseSpec(
        name=raw["name"],
        command=tuple(raw["command"]) if raw.get("command") is not None else None,
        timeout_s=float(raw["timeout_s"]) if raw.get("timeout_s") is not None else None,
        capabilities=tuple(raw.get("capabilities", ())),
        env=env,
        prompt=raw.get("prompt"),
    )
    return PhaseDraft(spec=spec, secrets=secrets)


def phase_specs(raw: list[dict[str, Any]] | None) -> tuple[PhaseDraft, ...] | None:
    if raw is None:
        return None
    return tuple(_draft(p, index) for index, p in enumerate(raw))


async def _show(request: web.Request, project_id: Any, status: int = 200) -> web.Response:
    at = position(request)
    view = await services(request).queries.project(caller(request), project_id)
    return reply(view, status=status, at=at)


@routes.post("/api/v1/projects")
@documented(
    CREATE,
    _201="the new project, in status draft",
    _403=PHASE_COMMANDS_REFUSED,
    _429="the project limit is reached",
)
async def create_project(request: web.Request) -> web.Response:
    """Create a project (status draft) with its phase plan: `phases`, or the phases of a
    configured `template`, or (given neither) the default template's."""
    who = caller(request, write=True)
    body = await validated_body(request, CREATE)
    state = await services(request).projects.create(
        who,
        name=body["name"],
        description=body.get("description", ""),
        project_type=body.get("project_type"),
        phases=phase_specs(body.get("phases")),
        template=body.get("template"),
        max_job_duration=body.get("max_job_duration") or None,
    )
    assert state.id is not None
    at = position(request)
    view = await services(request).queries.project(who, state.id)
    return reply(view, status=201, at=at, location=f"/api/v1/projects/{state.id}")


@routes.get("/api/v1/projects")
@query_params(*PAGING, "status", "archived", "project_type", choices={"status": ProjectStatus})
@documented(_200="a page of projects, newest first: items, next, has_more")
async def list_projects(request: web.Request) -> web.Response:
    """List projects, newest first, filtered by status, project_type and archived."""
    who = caller(request)
    status = choice_query(request, "status")
    archived_raw = choice_query(request, "archived") or "false"
    archived = None if archived_raw == "all" else archived_raw == "true"
    limit, offset = paging(request)
    at = position(request)
    result = await services(request).queries.projects(
        who,
        status=status,
        project_type=request.query.get("project_type") or None,
        archived=archived,
        limit=limit,
        offset=offset,
    )
    return reply(offset_listing(request, result["items"], result["total"], offset), at=at)


@routes.get("/api/v1/projects/{project_id}")
@query_params("as_of")
@documented(_200="the project with its phases, current phase and latest job")
async def get_project(request: web.Request) -> web.Response:
    """Show a project with its phase plan, current phase and latest job; with `as_of` (a log
    position or an RFC 3339 time), as it stood then, folded from its events."""
    if "as_of" in request.query:
        when = await as_of(request)
        project_id = path_id(request, "project_id", "project")
        view = await time_travel.project_at(request.app[STORE], caller(request), project_id, when)
        return reply(view, at=when.position)
    return await _show(request, path_id(request, "project_id", "project"))


@routes.patch("/api/v1/projects/{project_id}")
@documented(UPDATE, _200="the updated project", _403=PHASE_COMMANDS_REFUSED)
async def update_project(request: web.Request) -> web.Response:
    """Change a project's name, description, type or phase plan."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    body = await validated_body(request, UPDATE)
    await services(request).projects.update(
        who,
        project_id,
        name=body.get("name"),
        description=body.get("description"),
        project_type=body.get("project_type"),
        phases=phase_specs(body.get("phases")),
        max_job_duration=body.get("max_job_duration"),
    )
    return await _show(request, project_id)


@routes.delete("/api/v1/projects/{project_id}")
@documented(_200="the archived project (nothing is deleted)")
async def archive_project(request: web.Request) -> web.Response:
    """Archive a project: it leaves the default listing, and nothing is lost."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    await services(request).projects.archive(who, project_id)
    return await _show(request, project_id)


@routes.post("/api/v1/projects/{project_id}/unarchive")
@documented(
    _200="the project, back in the default listing",
    _409="the project is not archived",
    _429="the project limit is reached",
)
async def unarchive_project(request: web.Request) -> web.Response:
    """Bring an archived project back (its owner or an admin); it counts toward the owner's
    project limit again."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    await services(request).projects.unarchive(who, project_id)
    return await _show(request, project_id)


@routes.post("/api/v1/projects/{project_id}/ready")
@documented(_200="the project, now ready")
async def mark_ready(request: web.Request) -> web.Response:
    """Mark a project ready to run (it needs a phase plan)."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    await services(request).projects.mark_ready(who, project_id)
    return await _show(request, project_id)


@routes.post("/api/v1/projects/{project_id}/execute")
@documented(
    EXECUTE,
    _202="the queued job: project_id, job_id, status, stream_url, warnings",
    yields={"job_id": "job_id"},
    _403=PHASE_COMMANDS_REFUSED,
)
async def execute_project(request: web.Request) -> web.Response:
    """Run a project: queue a job for its phase plan and move the project to running."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    body = await optional_body(request, EXECUTE)
    run = await services(request).projects.execute(
        who,
        project_id,
        start_phase=body.get("start_phase"),
        model=body.get("model"),
        priority=priority_of(body),
    )
    return run_reply(request, run)


def priority_of(body: dict[str, Any]) -> JobPriority:
    """A run's priority as its (validated) body gives it."""
    return JobPriority(body.get("priority", JobPriority.NORMAL.value))


def run_view(run: Execution) -> dict[str, Any]:
    """A run just started: its project and job, their status, and where to follow it."""
    assert run.job.id is not None and run.job.status is not None
    return {
        "project_id": str(run.project.id),
        "job_id": str(run.job.id),
        "status": run.job.status.value,
        "priority": run.job.priority.value,
        "project_status": run.project.status.value if run.project.status else None,
        "stream_url": stream_url(run.job.id),
        "warnings": run_warnings(run),
    }


def run_warnings(run: Execution) -> list[dict[str, Any]]:
    """What the caller of a run should know: a plan no registered worker could ever run is
    queued all the same (a capable worker may register later), with a warning saying so."""
    never = run.never_runs
    if never is None:
        return []
    message = f"the job may never run: {never.reason}"
    return [
        {"code": "no_capable_worker", "message": message, "capabilities": list(never.capabilities)}
    ]


def run_reply(request: web.Request, run: Execution) -> web.Response:
    at = position(request)
    return reply(run_view(run), status=202, at=at, location=f"/api/v1/jobs/{run.job.id}")


@routes.post("/api/v1/quick-action")
@documented(
    QUICK_ACTION,
    _202="the run: project_id, job_id, status, project_status, stream_url, warnings",
    yields={"job_id": "job_id", "project_id": "project_id"},
    _403=PHASE_COMMANDS_REFUSED,
    _429="the project limit is reached",
)
async def quick_action(request: web.Request) -> web.Response:
    """Run a prompt in one call: create a project (the prompt is its description and first
    message; `name`, if not given, is the prompt's start) with `phases`, a `template`'s or the
    default template's, mark it ready and execute it, all in one transaction. `metadata` is
    recorded with the events it causes. Follow it at `stream_url`, or wait for its end with
    `GET /api/v1/jobs/{job_id}?wait=N`."""
    who = caller(request, write=True)
    require_run_scope(request)
    body = await validated_body(request, QUICK_ACTION)
    metadata = body.get("metadata")
    if metadata is not None:
        if len(json.dumps(metadata)) > MAX_METADATA_CHARS:
            raise ValidationError(
                f"metadata must be at most {MAX_METADATA_CHARS} characters of JSON",
                field="metadata",
            )
        who = attrs.evolve(who, client_metadata=metadata)
    run = await services(request).projects.quick_action(
        who,
        prompt=body["prompt"],
        phases=phase_specs(body.get("phases")),
        template=body.get("template"),
        model=body.get("model"),
        priority=priority_of(body),
        name=body.get("name"),
    )
    return run_reply(request, run)


@routes.post("/api/v1/projects/{project_id}/pause")
@documented(PAUSE, _200="the project, now paused")
async def pause_project(request: web.Request) -> web.Response:
    """Pause a running project: its job is held before its next phase (the running phase
    finishes; with `now` it is stopped and runs again on resume) and shows `paused`."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    body = await optional_body(request, PAUSE)
    await services(request).projects.pause(
        who, project_id, body.get("reason", ""), now=body.get("now", False)
    )
    return await _show(request, project_id)


@routes.post("/api/v1/projects/{project_id}/resume")
@documented(REASON, _200="the project, running again")
async def resume_project(request: web.Request) -> web.Response:
    """Resume a paused project: its job goes back to the queue and continues with its next
    phase (or the one a pause stopped) on any worker."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    body = await optional_body(request, REASON)
    await services(request).projects.resume(who, project_id, body.get("reason", ""))
    return await _show(request, project_id)


@routes.post("/api/v1/projects/{project_id}/cancel")
@documented(REASON, _200="the cancelled (or cancelling) run")
async def cancel_project(request: web.Request) -> web.Response:
    """Cancel the project's current run; a queued job stops at once, a running one when its
    worker acknowledges."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    body = await optional_body(request, REASON)
    run = await services(request).projects.cancel(who, project_id, body.get("reason", ""))
    assert run.job.id is not None and run.job.status is not None
    result = {
        "project_id": str(project_id),
        "job_id": str(run.job.id),
        "status": run.job.status.value,
        "cancel_requested": run.job.cancel_requested,
        "project_status": run.project.status.value if run.project.status else None,
        "stream_url": stream_url(run.job.id),
    }
    return reply(result, at=position(request))


@routes.get("/api/v1/projects/{project_id}/status")
@documented(_200="status, current phase and latest job")
async def project_status(request: web.Request) -> web.Response:
    """A project's status with its current phase and latest job's progress."""
    who = caller(request)
    project_id = path_id(request, "project_id", "project")
    at = position(request)
    return reply(await services(request).queries.project_status(who, project_id), at=at)


@routes.get("/api/v1/projects/{project_id}/history")
@query_params("after", "limit", bounds={"limit": (1, 1000)})
@documented(_200="the project's events in log order: items, next, has_more")
async def project_history(request: web.Request) -> web.Response:
    """The events of a project and of its jobs, in log order, after a position."""
    who = caller(request)
    project_id = path_id(request, "project_id", "project")
    after = int_query(request, "after", 0)
    limit = int_query(request, "limit", 100)
    history = await services(request).queries.history(who, project_id, after=after, limit=limit)
    last = history["next_after"]
    return reply(listing(request, history["items"], more=history["has_more"], after=last), at=last)
