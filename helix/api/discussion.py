"""Discussion: talk a project into shape before it runs."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from helix.api.handlers import (
    PAGING,
    caller,
    choice,
    documented,
    offset_listing,
    paging,
    path_id,
    position,
    reply,
    services,
    strings,
    validated_body,
)
from helix.api.projects import PRIORITY, priority_of, run_view
from helix.api.requests import choice_query, query_params
from helix.api.scopes import require_run_scope
from helix.api.validation import object_body
from helix.domain.job.decider import MAX_MODEL_CHARS
from helix.domain.project import MessageRole
from helix.domain.project.decider import (
    MAX_AUTHOR_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_PROJECT_TYPE_CHARS,
)
from helix.envelope import rfc3339
from helix.errors import ValidationError

routes = web.RouteTableDef()
THREAD_PAGE = 200

MESSAGE_FIELDS: dict[str, Any] = {
    "content": strings(min_length=1, max_length=MAX_MESSAGE_CHARS),
    "role": choice(MessageRole),
    "author": strings(min_length=1, max_length=MAX_AUTHOR_CHARS),
}
# The HELIX v4 seed posts `message`: an alias of `content` (one or the other).
SEED_NAMES = {"message": "content"}
MESSAGE = object_body(
    {
        **MESSAGE_FIELDS,
        "run": {"type": "boolean"},
        "model": strings(min_length=1, max_length=MAX_MODEL_CHARS),
        "priority": PRIORITY,
    },
    required=["content"],
    aliases=SEED_NAMES,
)
DISCUSS = object_body(
    {
        **MESSAGE_FIELDS,
        "project_id": {"type": ["string", "null"], "format": "uuid"},
        "name": strings(min_length=1, max_length=MAX_NAME_CHARS),
        "project_type": strings(min_length=1, max_length=MAX_PROJECT_TYPE_CHARS),
    },
    required=["content"],
    aliases=SEED_NAMES,
)


@routes.post("/api/v1/discuss")
@documented(
    DISCUSS,
    _200="the project id, the project and its thread",
    _201="a new draft project (now discussing) with its thread",
)
async def discuss(request: web.Request) -> web.Response:
    """Post to a project's discussion; without project_id, start a new project from it."""
    who = caller(request, write=True)
    body = await validated_body(request, DISCUSS)
    raw_id = body.get("project_id")
    project_id = uuid.UUID(raw_id) if raw_id else None
    service = services(request)
    state = await service.projects.discuss(
        who,
        content=body["content"],
        project_id=project_id,
        role=MessageRole(body.get("role", MessageRole.USER.value)),
        author=body.get("author"),
        name=body.get("name"),
        project_type=body.get("project_type"),
    )
    assert state.id is not None
    at = position(request)
    thread = await service.queries.messages(
        who, state.id, limit=THREAD_PAGE, offset=max(len(state.messages) - THREAD_PAGE, 0)
    )
    result = {
        "project_id": str(state.id),
        "project": await service.queries.project(who, state.id),
        "messages": thread["items"],
        "total": thread["total"],
    }
    created = project_id is None
    location = f"/api/v1/projects/{state.id}" if created else None
    return reply(result, status=201 if created else 200, at=at, location=location)


@routes.get("/api/v1/projects/{project_id}/messages")
@query_params(*PAGING, "role", choices={"role": MessageRole})
@documented(_200="a page of the thread in posting order: items, next, has_more")
async def list_messages(request: web.Request) -> web.Response:
    """A project's discussion in posting order, optionally of one role."""
    who = caller(request)
    project_id = path_id(request, "project_id", "project")
    role = choice_query(request, "role")
    limit, offset = paging(request)
    at = position(request)
    thread = await services(request).queries.messages(
        who, project_id, role=role, limit=limit, offset=offset
    )
    return reply(offset_listing(request, thread["items"], thread["total"], offset), at=at)


@routes.post("/api/v1/projects/{project_id}/messages")
@documented(
    MESSAGE,
    _201="the posted message (with `run`: and the run it started: `job_id`, `stream_url` and "
    "`warnings`)",
)
async def post_message(request: web.Request) -> web.Response:
    """Post a message (role user, assistant, agent or system) to a project's discussion; with
    `"run": true` also start a new run of the project (with `model`), in one transaction: 409
    and nothing posted while a run is in progress or the project is not ready."""
    who = caller(request, write=True)
    project_id = path_id(request, "project_id", "project")
    body = await validated_body(request, MESSAGE)
    projects = services(request).projects
    content = body["content"]
    role = MessageRole(body.get("role", MessageRole.USER.value))
    started: dict[str, Any] = {}
    if body.get("run", False):
        require_run_scope(request)
        run = await projects.post_and_run(
            who, project_id, content=content, role=role, author=body.get("author"),
            model=body.get("model"), priority=priority_of(body),
        )  # fmt: skip
        state = run.project
        shown = ("job_id", "stream_url", "warnings")
        started = {k: v for k, v in run_view(run).items() if k in shown}
    else:
        for field in ("model", "priority"):
            if field in body:
                raise ValidationError(f"{field} is for a message that starts a run", field=field)
        state = await projects.post_message(
            who, project_id, content=content, role=role, author=body.get("author")
        )
    message = state.messages[-1]
    result = {
        "id": str(message.message_id),
        "project_id": str(project_id),
        "seq": len(state.messages),
        "role": message.role.value,
        "author": message.author,
        "content": message.content,
        "at": rfc3339(message.at),
        "project_status": state.status.value if state.status else None,
        **started,
    }
    return reply(result, status=201, at=position(request))
