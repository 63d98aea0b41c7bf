"""Jobs: list, show with phases and output tail, page through output, files, cancel."""

from __future__ import annotations

import mimetypes
import re
import urllib.parse
from typing import Any

from aiohttp import web

from helix.api.handlers import (
    PAGING,
    as_of,
    caller,
    documented,
    listing,
    offset_listing,
    optional_body,
    paging,
    path_id,
    position,
    query_id,
    reply,
    services,
    strings,
)
from helix.api.requests import choice_query, int_query, query_params
from helix.api.validation import Setting, object_body
from helix.appkeys import SETTINGS, STORE
from helix.audit import time_travel
from helix.domain.job import JobPriority, JobStatus
from helix.domain.project.decider import MAX_REASON_CHARS
from helix.services.views import artifact_view

routes = web.RouteTableDef()
MAX_OUTPUT_PAGE = 5_000

CANCEL = object_body({"reason": strings(max_length=MAX_REASON_CHARS)})


@routes.get("/api/v1/jobs")
@query_params(
    *PAGING,
    "project_id",
    "status",
    "priority",
    "dead_lettered",
    choices={"status": JobStatus, "priority": JobPriority},
)
@documented(_200="a page of jobs, newest first: items, next, has_more")
async def list_jobs(request: web.Request) -> web.Response:
    """List jobs, newest first, filtered by project_id, status, priority and dead_lettered
    (`true`: only the jobs that failed out of attempts, `false`: the others)."""
    who = caller(request)
    project_id = query_id(request, "project_id")
    status = choice_query(request, "status")
    priority = choice_query(request, "priority")
    dead_lettered = choice_query(request, "dead_lettered")
    limit, offset = paging(request)
    at = position(request)
    result = await services(request).queries.jobs(
        who,
        project_id=project_id,
        status=status,
        priority=None if priority is None else JobPriority(priority),
        dead_lettered=None if dead_lettered is None else dead_lettered == "true",
        limit=limit,
        offset=offset,
    )
    page = offset_listing(request, result["items"], result["total"], offset)
    return reply(page, at=at)


@routes.get("/api/v1/jobs/{job_id}")
@query_params("as_of", "wait", bounds={"wait": (0, Setting("max_wait_seconds"))})
@documented(_200="the job with its phases (status, timings, cost) and output tail")
async def get_job(request: web.Request) -> web.Response:
    """Show a job with its phases, timings, cost totals and the tail of its output; with
    `as_of` (a log position or an RFC 3339 time), as it stood then, folded from its events;
    with `wait=N` (seconds, at most HELIX_MAX_WAIT_SECONDS), once it is terminal or N seconds
    passed, with `waited_seconds`."""
    who = caller(request)
    job_id = path_id(request, "job_id", "job")
    if "as_of" in request.query:
        when = await as_of(request)
        tail = request.app[SETTINGS].output_tail_lines
        view = await time_travel.job_at(request.app[STORE], who, job_id, when, tail_lines=tail)
        return reply(view, at=when.position)
    queries = services(request).queries
    if "wait" in request.query:
        wait = int_query(request, "wait", 0)
        view, at = await queries.wait_for_job(who, job_id, wait)
        return reply(view, at=at)
    at = position(request)
    return reply(await queries.job(who, job_id), at=at)


@routes.get("/api/v1/jobs/{job_id}/output")
@query_params(
    "after", "limit", "phase", bounds={"after": (0, 2**31 - 1), "limit": (1, MAX_OUTPUT_PAGE)}
)
@documented(_200="output lines after the job-wide line number `after`: items, next, has_more")
async def job_output(request: web.Request) -> web.Response:
    """A job's output lines, optionally of one phase, after a line number (each line's n)."""
    who = caller(request)
    job_id = path_id(request, "job_id", "job")
    after = int_query(request, "after", 0)
    limit = int_query(request, "limit", 500)
    phase = request.query.get("phase") or None
    at = position(request)
    result = await services(request).queries.output(
        who, job_id, phase=phase, after=after, limit=limit
    )
    page = listing(request, result["lines"], more=result["has_more"], after=result["next_after"])
    return reply(page, at=at)


@routes.post("/api/v1/jobs/{job_id}/cancel")
@documented(CANCEL, _200="the job, cancelled or cancelling (repeating changes nothing)")
async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a job; idempotent. A queued job is cancelled at once, a running one when its
    worker acknowledges."""
    who = caller(request, write=True)
    job_id = path_id(request, "job_id", "job")
    body = await optional_body(request, CANCEL)
    service = services(request)
    await service.jobs.cancel(who, job_id, body.get("reason", ""))
    return reply(await service.queries.job(who, job_id), at=position(request))


# Nothing to say: the attempts are the configured ones (HELIX_JOB_MAX_ATTEMPTS), afresh.
REQUEUE = object_body({})


@routes.post("/api/v1/jobs/{job_id}/requeue")
@documented(REQUEUE, _200="the job, queued again")
async def requeue_job(request: web.Request) -> web.Response:
    """Run a failed job again (dead-lettered or not), for its owner or an admin, as the event
    job.requeued: the phases its failure left undone are pending, with fresh attempts, and
    its project runs it again. 409 if the job did not fail or its project has run another job
    since."""
    who = caller(request, write=True)
    job_id = path_id(request, "job_id", "job")
    await optional_body(request, REQUEUE)
    service = services(request)
    await service.jobs.requeue(who, job_id)
    return reply(await service.queries.job(who, job_id), at=position(request))


@routes.get("/api/v1/jobs/{job_id}/files")
@query_params(*PAGING)
@documented(_200="a page of the job's files, by path: items, next, has_more")
async def list_files(request: web.Request) -> web.Response:
    """The files the job's phases produced, by path, each in its current version: the phase
    and attempt that wrote it, size, sha256, created or modified, and either `stored` with its
    `download_url` or the `reason` it was not stored (over a size limit, say)."""
    who = caller(request)
    job_id = path_id(request, "job_id", "job")
    limit, offset = paging(request, default=100)
    at = position(request)
    files = await services(request).artifacts.listed(who, job_id)
    items = [artifact_view(job_id, f) for f in files[offset : offset + limit]]
    return reply(offset_listing(request, items, len(files), offset), at=at)


# What a download's plain `filename` keeps of a name; the rest is in `filename*`.
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _disposition(path: str) -> str:
    """`attachment` with the file's own name: plain ASCII in `filename` (for every client),
    the name itself percent-encoded in `filename*` (RFC 6266)."""
    name = path.rsplit("/", 1)[-1]
    plain = _UNSAFE_FILENAME.sub("_", name).strip("._") or "file"
    encoded = urllib.parse.quote(name, safe="")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}"


DOWNLOAD: dict[str, Any] = {
    "200": {
        "description": "the file's bytes (ETag: its sha256), as an attachment",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "304": {"description": "the file is the one `If-None-Match` names"},
    "default": {"$ref": "#/components/responses/Error"},
}


@routes.get("/api/v1/jobs/{job_id}/files/{path:.+}")
@documented(responses=DOWNLOAD)
async def download_file(request: web.Request) -> web.StreamResponse:
    """Download the stored current version of the job's file at `path` (which may hold
    slashes), streamed, as an attachment, with its sha256 as ETag. A path with nothing stored
    (never reported, or not stored) is a 404, as is a job the caller may not see."""
    who = caller(request)
    job_id = path_id(request, "job_id", "job")
    artifacts = services(request).artifacts
    found = await artifacts.download(who, job_id, request.match_info["path"])
    artifact = found.artifact
    etag = f'"{artifact.sha256}"'
    headers = {
        "ETag": etag,
        "Content-Disposition": _disposition(artifact.path),
        "X-Content-Type-Options": "nosniff",
        # Never a page of Helix's origin, whatever the file holds.
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-cache",
    }
    if etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(headers=headers)
    kind, encoding = mimetypes.guess_type(artifact.path)
    # A compressed file (`x.tar.gz`) is its own bytes, not a tar sent with Content-Encoding.
    response.content_type = kind if kind and not encoding else "application/octet-stream"
    response.content_length = artifact.size
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in artifacts.chunks(found):
            await response.write(chunk)
    await response.write_eof()
    return response
