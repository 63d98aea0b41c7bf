"""Live streams over HTTP: SSE for one job, one project or everything the caller may see; the
WebSocket endpoint; and stream tokens for clients that cannot send headers.

The stream routes are marked public because a stream token may come in the query instead of a
header; each handler authenticates itself (`stream_principal`) before anything else. `install`
adds the process's tailer and heartbeat to the app's lifecycle.

SSE query parameters: `types` (comma-separated globs such as `job.*`), `after` (a position;
the `Last-Event-ID` header wins over it), `access_token` (a stream token), `follow` (job
streams: keep streaming after the job ended).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from helix.api.handlers import documented
from helix.api.health import SUPERVISOR
from helix.api.requests import choice_query, public, query_params
from helix.appkeys import SETTINGS, STORE, VERIFIER
from helix.audit.filters import parse_types as query_types
from helix.auth.principal import PRINCIPAL, Principal, principal_of
from helix.envelope import rfc3339
from helix.errors import NotFound, Unavailable, ValidationError
from helix.globs import TypeGlobs
from helix.streams import sse, tokens, websocket
from helix.streams.credentials import carried_by, check_scope, stream_principal, viewer_of
from helix.streams.endings import JobEnd
from helix.streams.filters import Filter, Scope, ScopeKind
from helix.streams.frames import Frame
from helix.streams.position import MAX_POSITION, parse_resume_position
from helix.streams.tailer import Heartbeat, Tailer

TAILER = web.AppKey("stream_tailer", Tailer)
HEARTBEAT = web.AppKey("stream_heartbeat", Heartbeat)
# A stream resumes after any log position (Last-Event-ID or `after`).
AFTER = {"after": (0, MAX_POSITION)}

routes = web.RouteTableDef()


def install(app: web.Application) -> None:
    """Run the tailer and the heartbeat with the app, and end every stream at shutdown (before
    aiohttp waits for handlers to finish). Installing twice changes nothing."""
    if _streams in app.cleanup_ctx:
        return
    app.cleanup_ctx.append(_streams)
    app.on_shutdown.append(_end_streams)


async def _streams(app: web.Application) -> AsyncIterator[None]:
    settings, store = app[SETTINGS], app[STORE]
    tailer = Tailer(
        store,
        store.head_watcher,
        batch_size=settings.stream_batch_size,
        buffer_size=settings.stream_buffer_size,
        recent=settings.stream_recent_events,
        poll_interval=settings.stream_poll_interval,
        supervisor=app.get(SUPERVISOR),
    )
    heartbeat = Heartbeat(settings.stream_heartbeat_interval)
    await tailer.start()
    await heartbeat.start()
    app[TAILER], app[HEARTBEAT] = tailer, heartbeat
    try:
        yield
    finally:
        await heartbeat.stop()
        await tailer.stop()


async def _end_streams(app: web.Application) -> None:
    if TAILER in app:
        app[TAILER].close_all()


def _tailer(request: web.Request) -> Tailer:
    if TAILER not in request.app:
        # helix.api.streams.install(app) was not called when the app was built.
        raise Unavailable("live streams are not running on this node")
    return request.app[TAILER]


def _after(request: web.Request) -> int | None:
    """`Last-Event-ID` (an EventSource reconnecting) wins over `?after=`."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw.strip() == "":
        return None
    return parse_resume_position(raw)


def _scope_id(request: web.Request, name: str, what: str) -> Any:
    try:
        return Scope.parse(f"{what}:{request.match_info[name]}").id
    except ValidationError:
        raise NotFound(f"{what} not found", **{name: request.match_info[name]}) from None


async def _serve_sse(request: web.Request, scope: Scope) -> web.StreamResponse:
    principal = await stream_principal(request)
    viewer = viewer_of(principal)
    tailer = _tailer(request)
    await check_scope(tailer.store.pool, scope, viewer)
    # `type`, repeated or comma-separated, as on /events (the WebSocket's JSON says `types`).
    types = query_types(request.query.getall("type", []))
    after = _after(request)
    settings = request.app[SETTINGS]
    end: JobEnd | None = None
    show: Callable[[Frame], bool] | None = None
    if scope.kind is ScopeKind.JOB:
        assert scope.id is not None
        resumed = after is not None
        if after is None:
            after = 0  # a job stream replays the job from its start unless told otherwise
        if choice_query(request, "follow") not in ("1", "true", "yes"):
            end = JobEnd(tailer.store.pool, scope.id)
            if resumed and await end.ended_by(after) is not None:
                # The client has seen the job's end: 204 is how the WHATWG HTML standard has
                # a server stop an EventSource from reconnecting for ever.
                return web.Response(status=204)
            # The subscription watches every event of the job for its end; `types` only
            # chooses what is shown.
            show, types = _shown(types), ()
    sub = tailer.subscribe(Filter(scope, viewer, types), after)
    return await sse.stream(
        request,
        sub,
        heartbeat=request.app[HEARTBEAT],
        retry_ms=settings.stream_retry_ms,
        show=show,
        end=end,
    )


def _shown(types: tuple[str, ...]) -> Callable[[Frame], bool] | None:
    if not types:
        return None
    wanted = TypeGlobs(types)
    return lambda frame: wanted.matches(frame.type)


@routes.get("/api/v1/stream/{job_id}")
@public
@query_params("after", "type", "follow", "access_token", bounds=AFTER)
async def stream_job(request: web.Request) -> web.StreamResponse:
    """Server-sent events of one job; ends with `event: done` after the job's terminal event
    unless `follow=true`. Without `after` it replays the job from its first event; resumed at
    or after the job's end (`Last-Event-ID` or `after`), it is `204 No Content`."""
    return await _serve_sse(request, Scope.job(_scope_id(request, "job_id", "job")))


@routes.get("/api/v1/projects/{project_id}/stream")
@public
@query_params("after", "type", "access_token", bounds=AFTER)
async def stream_project(request: web.Request) -> web.StreamResponse:
    """Server-sent events of one project and its jobs, live from now or after a position."""
    return await _serve_sse(request, Scope.project(_scope_id(request, "project_id", "project")))


@routes.get("/api/v1/events/stream")
@public
@query_params("after", "type", "access_token", bounds=AFTER)
async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events of everything the caller may see, live from now or after a
    position."""
    return await _serve_sse(request, Scope.everything())


@routes.get("/api/v1/ws")
@public
@query_params("access_token")
async def stream_websocket(request: web.Request) -> web.StreamResponse:
    """WebSocket subscriptions (graphql-ws message shape) to `job:<id>`, `project:<id>` or
    `all`, each with its own resume position."""
    found = request.get(PRINCIPAL)
    principal: Principal | None = found if isinstance(found, Principal) else None
    if principal is None and request.query.get("access_token"):
        principal = await stream_principal(request)
    return await websocket.serve(request, _tailer(request), request.app[SETTINGS], principal)


@routes.post("/api/v1/stream-tokens")
@documented(_201="a stream token: token, expires_at, expires_in")
async def create_stream_token(request: web.Request) -> web.Response:
    """A short-lived token for the caller, accepted only by the stream endpoints (in
    `?access_token=` or a WebSocket `auth` message)."""
    principal = principal_of(request)
    settings = request.app[SETTINGS]
    # The token carries the caller's credential (its scopes, key or JWT): it never does more
    # than that credential, nor outlives its expiry, and a revocation of it closes the token's
    # streams too.
    now = datetime.now(UTC)
    token, expires = tokens.mint(
        request.app[VERIFIER].own_secret,
        settings,
        user_id=principal.user_id,
        carried=carried_by(principal),
        until=principal.expires_at,
        now=now,
    )
    return web.json_response(
        {
            "token": token,
            "token_type": "stream",
            "expires_at": rfc3339(expires),
            "expires_in": max(0, math.ceil((expires - now).total_seconds())),
        },
        status=201,
    )
