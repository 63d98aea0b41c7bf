"""The worker protocol: register, heartbeat, claim (long-poll), report, upload a phase's files;
and the worker list.

Workers authenticate as a user whose role is `worker` (admins may act for any worker). A
worker may only heartbeat, claim and report as a worker its own user registered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from helix.api.handlers import (
    PAGING,
    caller,
    documented,
    offset_listing,
    optional_body,
    paging,
    path_id,
    position,
    reply,
    strings,
    validated_body,
)
from helix.api.requests import (
    choice_query,
    flag_query,
    int_query,
    number_query,
    query_params,
    streamed_body,
)
from helix.api.validation import Setting, object_body
from helix.appkeys import SERVICES, SETTINGS, VERIFIER
from helix.audit.time_travel import phase_json
from helix.auth.principal import principal_of
from helix.auth.tokens import issue_token
from helix.config import Settings
from helix.domain import job
from helix.domain.job import FileChange, OutputStream
from helix.domain.job.commands import WorkerReport
from helix.domain.job.decider import (
    MAX_AGENT_MESSAGE_CHARS,
    MAX_COST_TOKENS,
    MAX_CPU_S,
    MAX_ERROR_CHARS,
    MAX_LEASE_S,
    MAX_LINE_CHARS,
    MAX_LINES_PER_BATCH,
    MAX_PATH_CHARS,
    MAX_PERCENT,
    MAX_RESOURCE_BYTES,
    MAX_STDERR_TAIL_LINES,
    SHA256_PATTERN,
)
from helix.domain.project.decider import (
    MAX_CAPABILITIES,
    MAX_CAPABILITY_CHARS,
    MAX_PHASE_NAME_CHARS,
    MAX_REASON_CHARS,
)
from helix.domain.user import Role
from helix.domain.worker import MAX_HOSTNAME_CHARS, MAX_WORKER_NAME_CHARS
from helix.envelope import rfc3339
from helix.services import WorkerService
from helix.services.artifacts import CHUNK_BYTES
from helix.services.views import artifact_view, file_url
from helix.services.workers import CONTEXT_MESSAGES, WORKER_STATUSES, Claim, JobContext

routes = web.RouteTableDef()
WORKER_ROLES = (Role.WORKER, Role.ADMIN)
LIST_ROLES = (Role.WORKER, Role.ADMIN, Role.AUDITOR)
MAX_REPORTS = 1_000

CAPABILITIES: dict[str, Any] = {
    "type": "array",
    "items": strings(min_length=1, max_length=MAX_CAPABILITY_CHARS),
    "minItems": 1,
    "maxItems": MAX_CAPABILITIES,
}
REGISTER = object_body(
    {
        "name": strings(min_length=1, max_length=MAX_WORKER_NAME_CHARS),
        "hostname": strings(min_length=1, max_length=MAX_HOSTNAME_CHARS),
        "capabilities": CAPABILITIES,
        "resources": {"type": "object"},
    },
    required=["capabilities"],
)
FENCING_TOKEN: dict[str, Any] = {"type": "integer", "minimum": 0}
HEARTBEAT = object_body(
    {
        "worker_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": list(WORKER_STATUSES)},
        "current_job": {
            "type": ["object", "null"],
            "required": ["job_id", "fencing_token"],
            "additionalProperties": False,
            "properties": {
                "job_id": {"type": "string", "format": "uuid"},
                "fencing_token": FENCING_TOKEN,
            },
        },
        "resources": {"type": "object"},
    },
    required=["worker_id"],
)
CLAIM = object_body({"lease_s": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_LEASE_S}})
LINE = strings(max_length=MAX_LINE_CHARS)
PHASE = strings(min_length=1, max_length=MAX_PHASE_NAME_CHARS)
TEXT = strings(min_length=1, max_length=MAX_ERROR_CHARS)
# A process's exit status fits in 32 bits, and the phases read model stores it so.
EXIT_CODE: dict[str, Any] = {"type": ["integer", "null"], "minimum": -(2**31), "maximum": 2**31 - 1}
# Each report type with the fields it takes (besides `type`).
REPORTS: dict[str, dict[str, Any]] = {
    "phase_started": {"phase": PHASE},
    "output": {
        "phase": PHASE,
        "stream": {"type": "string", "enum": [s.value for s in OutputStream]},
        "lines": {
            "type": "array",
            "items": LINE,
            "minItems": 1,
            "maxItems": MAX_LINES_PER_BATCH,
        },
    },
    "file": {
        "phase": PHASE,
        "path": strings(min_length=1, max_length=MAX_PATH_CHARS),
        "size": {"type": "integer", "minimum": 0},
        "sha256": {"type": "string", "pattern": SHA256_PATTERN},
        "change": {"type": ["string", "null"], "enum": [*(c.value for c in FileChange), None]},
    },
    "artifact_not_stored": {
        "phase": PHASE,
        "path": strings(min_length=1, max_length=MAX_PATH_CHARS),
        "size": {"type": "integer", "minimum": 0},
        "sha256": {"type": "string", "pattern": SHA256_PATTERN},
        "change": {"type": ["string", "null"], "enum": [*(c.value for c in FileChange), None]},
        "reason": strings(min_length=1, max_length=MAX_REASON_CHARS),
    },
    "message": {
        "phase": PHASE,
        "content": strings(min_length=1, max_length=MAX_AGENT_MESSAGE_CHARS),
    },
    "cost": {
        "phase": PHASE,
        "tokens": {"type": "integer", "minimum": 0, "maximum": MAX_COST_TOKENS},
        "usd": {"type": "number", "minimum": 0},
    },
    "phase_resources": {
        "phase": PHASE,
        "cpu_s": {"type": "number", "minimum": 0, "maximum": MAX_CPU_S},
        **{
            name: {"type": "integer", "minimum": 0, "maximum": MAX_RESOURCE_BYTES}
            for name in ("max_rss_bytes", "read_bytes", "write_bytes")
        },
    },
    "progress": {"percent": {"type": "integer", "minimum": 0, "maximum": MAX_PERCENT}},
    "phase_completed": {"phase": PHASE, "exit_code": EXIT_CODE},
    "phase_failed": {
        "phase": PHASE,
        "exit_code": EXIT_CODE,
        "error": TEXT,
        "stderr_tail": {"type": "array", "items": LINE, "maxItems": MAX_STDERR_TAIL_LINES},
    },
    "phase_skipped": {"phase": PHASE, "reason": strings(min_length=1, max_length=MAX_REASON_CHARS)},
    "job_completed": {},
    "job_failed": {"error": TEXT},
    "cancel_acknowledged": {},
    "pause_acknowledged": {},
}
OPTIONAL = frozenset({"exit_code", "stderr_tail", "tokens", "usd", "change"})
# One report: its `type` picks the fields it takes, each type's rules under an if/then, so a
# refusal names the field of that type's report that is wrong.
REPORT: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "enum": list(REPORTS)}},
    "allOf": [
        {
            "if": {"required": ["type"], "properties": {"type": {"const": kind}}},
            "then": {
                "required": [name for name in fields if name not in OPTIONAL],
                "additionalProperties": False,
                "properties": {"type": {"const": kind}, **fields},
            },
        }
        for kind, fields in REPORTS.items()
    ],
}
REPORT_BATCH = object_body(
    {
        "fencing_token": FENCING_TOKEN,
        "reports": {"type": "array", "items": REPORT, "maxItems": MAX_REPORTS},
    },
    required=["fencing_token", "reports"],
)


RELEASE = object_body({"fencing_token": FENCING_TOKEN}, required=["fencing_token"])


def _service(request: web.Request) -> WorkerService:
    return request.app[SERVICES].workers


def worker_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["worker_id"]),
        "user_id": str(row["user_id"]),
        "name": row["name"],
        "hostname": row["hostname"],
        "capabilities": row["capabilities"],
        "resources": row["resources"],
        "status": row["status"],
        "online": row["online"],
        "current_job_id": str(row["current_job_id"]) if row["current_job_id"] else None,
        "registered_at": rfc3339(row["registered_at"]),
        "last_heartbeat_at": rfc3339(row["last_heartbeat_at"]),
        "offline_since": rfc3339(row["offline_since"]),
    }


def _lease_view(state: job.JobState) -> dict[str, Any]:
    return {
        "fencing_token": state.fencing_token,
        "expires_at": rfc3339(state.lease_expires_at),
    }


@routes.post("/api/v1/workers/register")
@documented(REGISTER, _201="the worker's id and credentials, heartbeat interval and lease")
async def register_worker(request: web.Request) -> web.Response:
    """Register a worker (its hostname, capabilities and resources) for the calling user."""
    who = caller(request, roles=WORKER_ROLES)
    body = await validated_body(request, REGISTER)
    hostname = body.get("hostname") or "unknown"
    row = await _service(request).register(
        who,
        name=body.get("name") or hostname,
        hostname=hostname,
        capabilities=body["capabilities"],
        resources=body.get("resources", {}),
    )
    principal = principal_of(request)
    verifier = request.app[VERIFIER]
    token, expires = issue_token(
        verifier.own_secret,
        verifier.settings,
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role.value,
    )
    settings = request.app[SETTINGS]
    body = {
        "worker_id": str(row["worker_id"]),
        "worker": worker_view(row),
        "credentials": {"token": token, "expires_at": rfc3339(expires)},
        "heartbeat_interval_s": settings.worker_heartbeat_interval,
        "lease_s": settings.worker_lease_s,
    }
    at = position(request)
    return reply(body, status=201, at=at, location=f"/api/v1/workers/{row['worker_id']}")


@routes.post("/api/v1/workers/heartbeat")
@documented(HEARTBEAT, _200="acknowledged, with the state of the job the worker runs")
async def heartbeat(request: web.Request) -> web.Response:
    """A worker is alive; with `current_job` it renews that job's lease while it holds it, and
    learns whether cancellation was requested (`job.cancel_requested`) or the lease was lost
    (`job.lease_valid` false: stop, report nothing more)."""
    who = caller(request, roles=WORKER_ROLES)
    body = await validated_body(request, HEARTBEAT)
    current = body.get("current_job")
    worker_id = uuid.UUID(body["worker_id"])
    seen = await _service(request).heartbeat(
        who,
        worker_id,
        status=body.get("status", "busy" if current else "idle"),
        current_job=uuid.UUID(current["job_id"]) if current else None,
        fencing_token=current["fencing_token"] if current else None,
        resources=body.get("resources"),
    )
    job_view = None
    if seen is not None:
        job_view = {
            "job_id": str(seen.job_id),
            "status": seen.status,
            "cancel_requested": seen.cancel_requested,
            "lease_valid": seen.lease_valid,
            "lease_expires_at": rfc3339(seen.lease_expires_at),
        }
    body = {"acknowledged": True, "worker_id": str(worker_id), "job": job_view}
    return reply(body, at=position(request))


@routes.post("/api/v1/workers/{worker_id}/claim")
@query_params(
    "wait", schemas={"wait": {"type": "number", "minimum": 0, "maximum": Setting("claim_max_wait")}}
)
@documented(CLAIM, _200="the job, its phase plan and the lease", _204="no job within `wait`")
async def claim(request: web.Request) -> web.Response:
    """Claim the oldest queued job whose phases this worker's capabilities cover, waiting up
    to `?wait=` seconds for one (woken as soon as one is queued)."""
    who = caller(request, roles=WORKER_ROLES)
    worker_id = path_id(request, "worker_id", "worker")
    wait = number_query(request, "wait", 0.0)
    body = await optional_body(request, CLAIM)
    service = _service(request)
    claimed = await service.claim(who, worker_id, wait=wait, lease_s=body.get("lease_s"))
    if claimed is None:
        return web.Response(status=204)
    answer = reply(_claim_view(claimed, request.app[SETTINGS]), at=position(request))
    # It carries the job's phase secrets: no cache, and no idempotency record, may keep it.
    answer.headers["Cache-Control"] = "no-store"
    return answer


def _claim_view(claimed: Claim, settings: Settings) -> dict[str, Any]:
    """The claimed job for its worker: the one answer that carries phase secrets' plaintext,
    in each phase's `env` beside its plain values (`secret_env` names them)."""
    state = claimed.job
    return {
        "job": {
            "id": str(state.id),
            "project_id": str(state.project_id),
            "owner": state.owner,
            "status": state.status.value if state.status else None,
            "model": state.model,
            "priority": state.priority.value,
            "attempt": state.attempt,
            "max_attempts": state.max_attempts,
            "stream_url": f"/api/v1/stream/{state.id}",
        },
        "phases": [
            {
                "name": p.name,
                "ordinal": index,
                "status": p.status.value,
                "command": list(p.command) if p.command is not None else None,
                "timeout_s": p.timeout_s,
                "capabilities": list(p.capabilities),
                "prompt": p.prompt,
                "env": {
                    name: value if isinstance(value, str) else claimed.secrets[p.name][name]
                    for name, value in p.env.items()
                },
                "secret_env": sorted(claimed.secrets.get(p.name, {})),
            }
            # 1-based, as everywhere else a phase has an ordinal (the job_phases read model).
            for index, p in enumerate(state.phases, start=1)
        ],
        "lease": {**_lease_view(state), "lease_s": claimed.lease_s},
        # What the worker may upload of the phases' files (bytes; null: no limit).
        "artifacts": {
            "max_bytes": settings.artifact_max_bytes or None,
            "job_max_bytes": settings.job_artifacts_max_bytes or None,
        },
    }


@routes.get("/api/v1/workers")
@query_params(*PAGING, "online")
@documented(_200="a page of workers: items, next, has_more")
async def list_workers(request: web.Request) -> web.Response:
    """Workers with their status, capabilities and last heartbeat (`?online=true|false`, or
    1|0);
    a worker's user sees its own workers, admins and auditors all."""
    who = caller(request, roles=LIST_ROLES)
    online = flag_query(request, "online")
    limit, offset = paging(request)
    at = position(request)
    rows, total = await _service(request).page(who, online=online, limit=limit, offset=offset)
    items = [worker_view(r) for r in rows]
    return reply(offset_listing(request, items, total, offset), at=at)


@routes.get("/api/v1/workers/{worker_id}")
@documented(_200="the worker")
async def get_worker(request: web.Request) -> web.Response:
    """One worker with its status, capabilities, resources and last heartbeat."""
    who = caller(request, roles=LIST_ROLES)
    worker_id = path_id(request, "worker_id", "worker")
    at = position(request)
    return reply(worker_view(await _service(request).get(who, worker_id)), at=at)


# --- reports --------------------------------------------------------------------------------


def _report_command(raw: dict[str, Any], token: int, at: datetime) -> WorkerReport:
    kind = raw["type"]  # the batch's schema has checked the report's fields for its type
    builders: dict[str, Callable[[], WorkerReport]] = {
        "phase_started": lambda: job.StartPhase(fencing_token=token, phase=raw["phase"], at=at),
        "output": lambda: job.RecordOutput(
            fencing_token=token,
            phase=raw["phase"],
            stream=OutputStream(raw["stream"]),
            lines=tuple(raw["lines"]),
            at=at,
        ),
        "file": lambda: job.RecordFile(
            fencing_token=token,
            phase=raw["phase"],
            path=raw["path"],
            size=raw["size"],
            sha256=raw["sha256"],
            change=FileChange(raw["change"]) if raw.get("change") else None,
            at=at,
        ),
        "artifact_not_stored": lambda: job.RecordArtifactNotStored(
            fencing_token=token,
            phase=raw["phase"],
            path=raw["path"],
            size=raw["size"],
            sha256=raw["sha256"],
            change=FileChange(raw["change"]) if raw.get("change") else None,
            reason=raw["reason"],
            at=at,
        ),
        "message": lambda: job.RecordMessage(
            fencing_token=token, phase=raw["phase"], content=raw["content"], at=at
        ),
        "cost": lambda: job.RecordCost(
            fencing_token=token,
            phase=raw["phase"],
            tokens=raw.get("tokens", 0),
            usd=float(raw.get("usd", 0.0)),
            at=at,
        ),
        "phase_resources": lambda: job.RecordResources(
            fencing_token=token,
            phase=raw["phase"],
            used=job.Resources(
                cpu_s=float(raw["cpu_s"]),
                max_rss_bytes=raw["max_rss_bytes"],
                read_bytes=raw["read_bytes"],
                write_bytes=raw["write_bytes"],
            ),
            at=at,
        ),
        "progress": lambda: job.ReportProgress(fencing_token=token, percent=raw["percent"], at=at),
        "phase_completed": lambda: job.CompletePhase(
            fencing_token=token, phase=raw["phase"], exit_code=raw.get("exit_code", 0), at=at
        ),
        "phase_failed": lambda: job.FailPhase(
            fencing_token=token,
            phase=raw["phase"],
            error=raw["error"],
            exit_code=raw.get("exit_code"),
            stderr_tail=tuple(raw.get("stderr_tail", ())),
            at=at,
        ),
        "phase_skipped": lambda: job.SkipPhase(
            fencing_token=token, phase=raw["phase"], reason=raw["reason"], at=at
        ),
        "job_completed": lambda: job.CompleteJob(fencing_token=token, at=at),
        "job_failed": lambda: job.FailJob(fencing_token=token, error=raw["error"], at=at),
        "cancel_acknowledged": lambda: job.AcknowledgeCancel(fencing_token=token, at=at),
        "pause_acknowledged": lambda: job.AcknowledgePause(fencing_token=token, at=at),
    }
    return builders[kind]()


@routes.post("/api/v1/jobs/{job_id}/reports")
@documented(REPORT_BATCH, _200="the job, its lease and whether cancellation was requested")
async def report(request: web.Request) -> web.Response:
    """A worker's reports on the job it holds, applied atomically in order under its fencing
    token: phase started, output lines, file written (created or modified), cost, progress, a
    message to the project's discussion (posted as role `agent`), phase completed / failed /
    skipped, job completed / failed, cancel or pause acknowledged. Each renews the lease. A stale
    token or an expired lease is a 409 and changes nothing."""
    who = caller(request, roles=WORKER_ROLES)
    job_id = path_id(request, "job_id", "job")
    body = await validated_body(request, REPORT_BATCH)
    token: int = body["fencing_token"]
    # A placeholder time: the service stamps each command with its transaction's clock.
    now = datetime.now(UTC)
    commands = [_report_command(raw, token, now) for raw in body["reports"]]
    state = await _service(request).report(who, job_id, token, commands)
    return reply(
        {
            "job": {
                "id": str(state.id),
                "status": state.status.value if state.status else None,
                "cancel_requested": state.cancel_requested,
                "progress": state.progress,
            },
            "lease": _lease_view(state),
            "cancel_requested": state.cancel_requested,
        },
        at=position(request),
    )


def _fencing_token(request: web.Request) -> int:
    return int_query(request, "fencing_token", 0)


def _context_view(found: JobContext, tail_lines: int) -> dict[str, Any]:
    """A phase's context file: the project, its discussion, and the job's phases so far with
    what each came to (its status, timings, files, cost, last output lines)."""
    state, owner = found.job, found.project
    tails: dict[str, list[str]] = {}
    for row in found.output:
        tails.setdefault(row["phase"], []).append(row["line"])
    phases = [
        {
            **phase_json(p, index),
            "prompt": p.prompt,
            "output_tail": tails.get(p.name, [])[-tail_lines:] if tail_lines else [],
        }
        for index, p in enumerate(state.phases, start=1)
    ]
    return {
        "project": {
            "id": str(owner.id),
            "name": owner.name,
            "description": owner.description,
            "project_type": owner.project_type,
        },
        "discussion": [
            {"role": m.role.value, "author": m.author, "content": m.content, "at": rfc3339(m.at)}
            for m in owner.messages[-CONTEXT_MESSAGES:]
        ],
        "job": {
            "id": str(state.id),
            "model": state.model,
            "attempt": state.attempt,
            "max_attempts": state.max_attempts,
        },
        "phases": phases,
    }


@routes.get("/api/v1/jobs/{job_id}/context")
@query_params("fencing_token", required=("fencing_token",))
@documented(_200="the project, its discussion and the job's phases so far, for its phases")
async def job_context(request: web.Request) -> web.Response:
    """What the phases of a job may know, for the worker holding its lease
    (`?fencing_token=`): the project's name, description and type, the latest messages of its
    discussion, and each phase with its prompt, status, timings, files, cost and last output
    lines. A worker writes it to the phase's context file, so no phase needs a credential of
    its own. A stale token or a lease gone is a 409."""
    who = caller(request, roles=WORKER_ROLES)
    job_id = path_id(request, "job_id", "job")
    token = _fencing_token(request)
    at = position(request)
    found = await _service(request).context(who, job_id, token)
    answer = reply(_context_view(found, request.app[SETTINGS].output_tail_lines), at=at)
    answer.headers["Cache-Control"] = "no-store"
    return answer


# The largest `size` an upload may declare (the decider holds it to the configured limits).
MAX_UPLOAD_BYTES = 2**62


@routes.put("/api/v1/jobs/{job_id}/files/{path:.+}")
@query_params(
    "fencing_token",
    "phase",
    "size",
    "sha256",
    "change",
    bounds={"size": (0, MAX_UPLOAD_BYTES)},
    choices={"change": FileChange},
    required=("fencing_token", "phase", "size", "sha256"),
    schemas={
        "phase": strings(min_length=1, max_length=MAX_PHASE_NAME_CHARS),
        "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
    },
)
@streamed_body
@documented(_201="the file, stored: path, phase, attempt, size, sha256, download_url")
async def upload_file(request: web.Request) -> web.Response:
    """The worker holding the job's lease (`?fencing_token=`) uploads a file its running
    `phase` produced, as the raw body (streamed, any length up to the limits), with its `size`
    and `sha256` (and `change`: created or modified). Checked before a byte is read: the token
    (a stale one is a 409), the phase, the path (relative, no `.`/`..` part), and the size
    against HELIX_ARTIFACT_MAX_BYTES and HELIX_JOB_ARTIFACTS_MAX_BYTES (413). A body that is
    not `size` bytes (400) or whose sha256 differs (422) is refused and nothing is kept.
    Recorded as `job.artifact_stored`; it is the path's current version from now on."""
    who = caller(request, roles=WORKER_ROLES)
    job_id = path_id(request, "job_id", "job")
    phase = request.query["phase"]
    change = choice_query(request, "change")
    service = request.app[SERVICES].artifacts
    command = service.command(
        fencing_token=_fencing_token(request),
        phase=phase,
        path=request.match_info["path"],
        size=int_query(request, "size", 0),
        sha256=request.query["sha256"],
        change=FileChange(change) if change else None,
    )
    stored = await service.store(who, job_id, command, request.content.iter_chunked(CHUNK_BYTES))
    at = position(request)
    location = file_url(job_id, stored.path)
    return reply(artifact_view(job_id, stored), status=201, at=at, location=location)


@routes.post("/api/v1/jobs/{job_id}/release")
@documented(RELEASE, _200="the job, back in the queue (or failed once its attempts are used up)")
async def release(request: web.Request) -> web.Response:
    """A worker that is stopping hands back the job it holds, under its fencing token: the
    lease ends now and the job is retried after its backoff, as after a lost lease. A stale
    token is a 409 and changes nothing."""
    who = caller(request, roles=WORKER_ROLES)
    job_id = path_id(request, "job_id", "job")
    body = await validated_body(request, RELEASE)
    state = await _service(request).release(who, job_id, body["fencing_token"])
    job = {"id": str(state.id), "status": state.status.value if state.status else None}
    return reply({"job": job}, at=position(request))


__all__ = ["routes", "worker_view"]
