"""Server-sent events: one subscription written to one response until the client leaves, the
job ends, the caller's credentials are revoked, or the server shuts down.

Each event is `id: <position>`, `event: <type>`, `data: <envelope JSON>`; `event: caught_up`
marks the switch from replay to live, `event: done` ends a job stream, and a comment line is
the heartbeat. A stream whose credentials stop holding (an API key revoked, a user disabled or
given another role, a stream token expired) ends with `event: error`, whose data is the error
envelope saying why, so a page can mint a new stream token and resume rather than retry. A
stream whose database drops ends the same way, with `SERVICE_UNAVAILABLE` and its
`retry_after` seconds in the details: the client resumes from its last id once it is back.

Writing awaits the socket, so a slow client slows only its own subscription, which the tailer
switches to catch-up once its buffer is full. A live client that keeps up is written to by the
tailer directly (`direct_writer`): a thousand clients cost a thousand socket writes per event,
not a thousand task wake-ups.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from aiohttp import web

from helix.auth.principal import PRINCIPAL, Principal, request_id
from helix.database import UNAVAILABLE_RETRY_AFTER, database_unavailable
from helix.errors import HelixError, Unauthorized, Unavailable, error_body
from helix.streams.credentials import watch_credentials
from helix.streams.endings import JobEnd
from helix.streams.frames import CaughtUp, Frame
from helix.streams.revocation import Watch
from helix.streams.subscriptions import Batch, Subscription
from helix.streams.tailer import Heartbeat

log = logging.getLogger(__name__)

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
KEEPALIVE = ": keep-alive\n\n"
DIRECT_LIMIT = 64 * 1024


def named_message(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def direct_writer(
    request: web.Request, response: web.StreamResponse
) -> Callable[[Frame], bool] | None:
    """A writer the tailer calls for a live, idle subscription: the frame's pre-rendered bytes
    go to the socket at once, in the framing the response declared, with no task to wake per
    client. It declines (the frame is then buffered for the consumer task, which awaits the
    socket) while the socket holds more than DIRECT_LIMIT unsent bytes."""
    transport = request.transport
    if transport is None:
        return None
    encoding = response.headers.get("Transfer-Encoding", "").lower()
    if encoding == "chunked":
        render: Callable[[Frame], bytes] = _chunk
    elif not encoding and "Content-Length" not in response.headers:
        render = _message
    else:
        return None

    def write(frame: Frame) -> bool:
        if transport.is_closing() or transport.get_write_buffer_size() > DIRECT_LIMIT:
            return False
        transport.write(render(frame))
        return True

    return write


def _chunk(frame: Frame) -> bytes:
    return frame.sse_chunk


def _message(frame: Frame) -> bytes:
    return frame.sse


async def stream(
    request: web.Request,
    sub: Subscription,
    *,
    heartbeat: Heartbeat,
    retry_ms: int,
    show: Callable[[Frame], bool] | None = None,
    end: JobEnd | None = None,
) -> web.StreamResponse:
    """Write `sub` as an event stream for the request's principal (401 or 403 before the
    first byte if their credentials no longer hold). `show` hides frames the subscription needs
    but the client did not ask for (a job stream watches every event of its job for the end)."""
    response = web.StreamResponse(status=200, headers=HEADERS)
    heartbeat.add(sub.poke)
    watch: Watch | None = None
    ending: list[HelixError] = []  # why the server ends the stream, if it does

    def end_with(error: HelixError) -> None:
        ending.append(error)
        sub.close()

    try:
        principal = request.get(PRINCIPAL)
        if not isinstance(principal, Principal):
            raise Unauthorized("authentication required")
        watch = await watch_credentials(sub.tailer, principal, lambda why: end_with(why.error()))
        await response.prepare(request)
        await response.write(f"retry: {retry_ms}\n\n".encode())
        if show is None and end is None:
            sub.direct = direct_writer(request, response)
        while True:
            try:
                batch = await sub.next()
                if batch.closed:
                    if batch.unavailable is not None:
                        ending.append(_unavailable(batch.unavailable))
                    if ending:
                        await response.write(_error_message(request, ending[0]))
                        await response.write_eof()
                    break
                out, done = await _render(batch, show, end)
            except Exception as exc:
                if not (database_unavailable(exc) and response.prepared):
                    raise
                reason = f"the database is not reachable ({type(exc).__name__})"
                await response.write(_error_message(request, _unavailable(reason)))
                await response.write_eof()
                break
            if batch.heartbeat and not out:
                out.append(KEEPALIVE.encode())
            if out:
                await response.write(b"".join(out))
            if done is not None:
                await response.write_eof()
                break
    except ConnectionError:
        log.debug("an event-stream client went away")
    finally:
        heartbeat.discard(sub.poke)
        sub.close()
        if watch is not None:
            watch.cancel()
    return response


def _error_message(request: web.Request, error: HelixError) -> bytes:
    body = error_body(error.code, error.message, error.details, request_id(request))
    return named_message("error", body).encode()


def _unavailable(reason: str) -> Unavailable:
    return Unavailable(reason, retry_after=UNAVAILABLE_RETRY_AFTER)


async def _render(
    batch: Batch, show: Callable[[Frame], bool] | None, end: JobEnd | None
) -> tuple[list[bytes], int | None]:
    """A batch's bytes, and the position of the job's end if the batch reached it."""
    out: list[bytes] = []
    done: int | None = None
    for item in batch.items:
        if isinstance(item, CaughtUp):
            out.append(named_message("caught_up", {"position": item.position}).encode())
            if end is not None:
                done = await end.ended_by(item.position)
        else:
            if show is None or show(item):
                out.append(item.sse)
            if end is not None and end.is_end(item):
                done = item.position
        if done is not None and end is not None:
            out.append(named_message("done", end.done(done)).encode())
            break
    return out, done
