"""The WebSocket endpoint, on the graphql-ws message shape.

Client → server: `auth {payload: {token}}` (or graphql-ws `connection_init`), `subscribe {id,
payload: {stream, after, types, follow}}`, `complete {id}`, `ping`/`pong`.
Server → client: `connection_ack`, `subscribed {id, payload: {stream, position}}`, `event {id,
payload: <event>}`, `caught_up {id, payload: {position}}`, `complete {id}` (a job stream after
the job's end), `error {id, payload: {code, message}}` (`SERVICE_UNAVAILABLE` when the database
dropped: the subscription has ended, subscribe again from its last position), `pong`.
Close codes: 4400 a malformed message (after an `error` message without an id that says what
was wrong; messages are JSON decoded by `helix.inputs`), 4401 no valid credentials (or none
within the auth timeout, or the socket's API key revoked, its user disabled or its stream
token expired since), 4403 an
`auth` naming another user than the socket's (or the user's role changed since), 4429 too many
subscriptions.

Each subscription has its own resume position and its own pump task writing to the socket
(aiohttp allows several writers beside the one reader); WebSocket ping frames every heartbeat
interval keep the connection alive and close it when pongs stop coming back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from helix.auth.principal import Principal
from helix.config import Settings
from helix.database import database_unavailable
from helix.errors import Forbidden, HelixError, Unauthorized, ValidationError
from helix.inputs import decode_json
from helix.streams.credentials import check_scope, from_any_token, viewer_of, watch_credentials
from helix.streams.endings import JobEnd
from helix.streams.filters import Filter, Scope, ScopeKind, parse_types
from helix.streams.frames import CaughtUp
from helix.streams.position import resume_position
from helix.streams.revocation import Revoked, Watch
from helix.streams.subscriptions import Subscription
from helix.streams.tailer import Tailer
from helix.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
BAD_MESSAGE = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
TOO_MANY = 4429
MAX_ID = 128


class Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Session:
    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        tailer: Tailer,
        settings: Settings,
        principal: Principal | None,
    ) -> None:
        self.request = request
        self.ws = ws
        self.tailer = tailer
        self.settings = settings
        self.principal = principal
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.watch: Watch | None = None
        self.closing: asyncio.Task[bool] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.stream_auth_timeout
        try:
            if self.principal is not None:
                await self.guard(self.principal)
            while not self.ws.closed:
                timeout = None if self.principal else max(0.0, deadline - loop.time())
                try:
                    msg = await self.ws.receive(timeout=timeout)
                except TimeoutError:
                    raise Closing(UNAUTHORIZED, "authentication timed out") from None
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if msg.type is WSMsgType.ERROR:
                    break
                if msg.type is not WSMsgType.TEXT:
                    raise Closing(BAD_MESSAGE, "messages must be JSON text")
                await self.dispatch(self.parse(msg.data))
        except Closing as closing:
            if closing.code == BAD_MESSAGE:
                # The close reason is cut short; the message says in full what was wrong.
                with contextlib.suppress(Exception):  # the client may be gone already
                    await self.send(
                        {
                            "type": "error",
                            "payload": {"code": "VALIDATION_ERROR", "message": closing.reason},
                        }
                    )
            await self.ws.close(code=closing.code, message=_close_reason(closing.reason))
        finally:
            if self.watch is not None:
                self.watch.cancel()
            await cancel_and_wait(list(self.pumps.values()))
            self.pumps.clear()
            if self.closing is not None:
                with contextlib.suppress(Exception):  # the client may be gone already
                    await self.closing

    async def guard(self, principal: Principal) -> None:
        """Watch the principal's credentials from now on (instead of the previous ones')."""
        try:
            watch = await watch_credentials(self.tailer, principal, self.revoke)
        except Forbidden as exc:
            raise Closing(FORBIDDEN, exc.message) from None
        except Unauthorized as exc:
            raise Closing(UNAUTHORIZED, exc.message) from None
        if self.watch is not None:
            self.watch.cancel()
        self.watch = watch

    def revoke(self, revoked: Revoked) -> None:
        """Close the socket; called from the tailer's fan-out, so the close runs as a task of
        its own (its `receive` in `run` then returns and ends the session)."""
        if self.closing is None and not self.ws.closed:
            code = FORBIDDEN if revoked.forbidden else UNAUTHORIZED
            message = revoked.reason.encode()[:120]
            self.closing = asyncio.create_task(self.ws.close(code=code, message=message))

    @staticmethod
    def parse(text: str) -> dict[str, Any]:
        try:
            message = decode_json(text, "message")
        except HelixError as exc:
            raise Closing(BAD_MESSAGE, exc.message) from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Closing(BAD_MESSAGE, "a message is an object with a 'type'")
        return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message, separators=(",", ":"), default=str))

    async def dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("auth", "connection_init"):
            await self.authenticate(message.get("payload"))
        elif kind == "ping":
            await self.send({"type": "pong", **_payload_of(message)})
        elif kind == "pong":
            return
        elif kind == "subscribe":
            await self.subscribe(message)
        elif kind == "complete":
            self.complete(_id_of(message))
        else:
            raise Closing(BAD_MESSAGE, f"unknown message type {kind!r}")

    async def authenticate(self, payload: object) -> None:
        token = (
            payload.get("token") or payload.get("Authorization")
            if isinstance(payload, dict)
            else None
        )
        if token is not None and not isinstance(token, str):
            raise Closing(BAD_MESSAGE, "the auth token must be a string")
        if token:
            try:
                found = await from_any_token(self.request, token)
            except Unauthorized as exc:
                raise Closing(UNAUTHORIZED, exc.message) from None
            if self.principal is not None and found.user_id != self.principal.user_id:
                # One socket, one caller: its subscriptions were authorized for the first.
                raise Closing(FORBIDDEN, "this socket is authenticated as another user")
            await self.guard(found)
            self.principal = found
        elif self.principal is None:
            raise Closing(UNAUTHORIZED, "auth needs a payload with a token")
        await self.send({"type": "connection_ack", "payload": {"user_id": self._user_id()}})

    def _user_id(self) -> str:
        assert self.principal is not None
        return str(self.principal.user_id)

    async def subscribe(self, message: dict[str, Any]) -> None:
        if self.principal is None:
            raise Closing(UNAUTHORIZED, "authenticate before subscribing")
        sub_id = _id_of(message)
        payload = message.get("payload")
        if not isinstance(payload, dict):
            raise Closing(BAD_MESSAGE, "subscribe needs a payload object")
        if sub_id in self.pumps:
            await self.error(sub_id, "CONFLICT", f"subscription {sub_id!r} already exists")
            return
        if len(self.pumps) >= self.settings.stream_max_subscriptions:
            raise Closing(TOO_MANY, "too many subscriptions on this socket")
        viewer = viewer_of(self.principal)
        try:
            scope = Scope.parse(str(payload.get("stream", "")))
            types = parse_types(payload.get("types"))
            after = payload.get("after")
            if after is not None:
                after = resume_position(after)
            follow = payload.get("follow", False)
            if not isinstance(follow, bool):
                raise ValidationError("follow must be a boolean", field="follow")
            await check_scope(self.tailer.store.pool, scope, viewer)
        except HelixError as exc:
            await self.error(sub_id, exc.code, exc.message)
            return
        end = None
        if scope.kind is ScopeKind.JOB and not follow:
            assert scope.id is not None
            end = JobEnd(self.tailer.store.pool, scope.id)
        if scope.kind is ScopeKind.JOB and after is None:
            after = 0  # a job stream replays the job from its start unless told otherwise
        sub = self.tailer.subscribe(Filter(scope, viewer, types), after, transport="websocket")
        await self.send(
            {
                "type": "subscribed",
                "id": sub_id,
                "payload": {"stream": str(scope), "position": sub.position},
            }
        )
        self.pumps[sub_id] = asyncio.create_task(self.pump(sub_id, sub, end))

    def complete(self, sub_id: str) -> None:
        task = self.pumps.pop(sub_id, None)
        if task is not None:
            task.cancel()

    async def error(self, sub_id: str, code: str, message: str) -> None:
        await self.send(
            {"type": "error", "id": sub_id, "payload": {"code": code, "message": message}}
        )

    async def pump(self, sub_id: str, sub: Subscription, end: JobEnd | None) -> None:
        try:
            while True:
                batch = await sub.next()
                if batch.closed:
                    if batch.unavailable is not None:  # the client may subscribe again later
                        self.pumps.pop(sub_id, None)
                        await self.error(sub_id, "SERVICE_UNAVAILABLE", batch.unavailable)
                    return
                for item in batch.items:
                    done: int | None = None
                    if isinstance(item, CaughtUp):
                        await self.send(
                            {
                                "type": "caught_up",
                                "id": sub_id,
                                "payload": {"position": item.position},
                            }
                        )
                        if end is not None:
                            done = await end.ended_by(item.position)
                    else:
                        # The envelope is rendered once for every subscriber; splice it in.
                        await self.ws.send_str(
                            f'{{"type":"event","id":{json.dumps(sub_id)},"payload":{item.json}}}'
                        )
                        if end is not None and end.is_end(item):
                            done = item.position
                    if done is not None:
                        await self.send({"type": "complete", "id": sub_id})
                        self.pumps.pop(sub_id, None)
                        return
        except ConnectionError:
            log.debug("a WebSocket client went away")
        except Exception as exc:
            self.pumps.pop(sub_id, None)
            if database_unavailable(exc):
                code, message = "SERVICE_UNAVAILABLE", "the database is not reachable; resubscribe"
                log.warning(
                    "WebSocket subscription %s ended: %s: %s", sub_id, type(exc).__name__, exc
                )
            else:
                code, message = "INTERNAL_ERROR", "the subscription failed; resubscribe"
                log.exception("WebSocket subscription %s failed", sub_id)
            with contextlib.suppress(Exception):
                await self.error(sub_id, code, message)
        finally:
            sub.close()


def _close_reason(text: str) -> bytes:
    """A close frame's reason: UTF-8 (what cannot be encoded, escaped) within the frame's
    limit of 123 bytes, cut between characters."""
    return text.encode("utf-8", "backslashreplace")[:120].decode("utf-8", "ignore").encode()


def _id_of(message: dict[str, Any]) -> str:
    sub_id = message.get("id")
    if not isinstance(sub_id, str) or not 0 < len(sub_id) <= MAX_ID:
        raise Closing(BAD_MESSAGE, f"'id' must be a string of 1 to {MAX_ID} characters")
    return sub_id


def _payload_of(message: dict[str, Any]) -> dict[str, Any]:
    return {"payload": message["payload"]} if "payload" in message else {}


async def serve(
    request: web.Request, tailer: Tailer, settings: Settings, principal: Principal | None
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,), heartbeat=settings.stream_heartbeat_interval, autoping=True
    )
    await ws.prepare(request)
    await Session(request, ws, tailer, settings, principal).run()
    if not ws.closed:
        await ws.close()
    return ws
