"""`AsyncClient`: every resource of the Helix API as coroutines and async iterators.

    async with AsyncClient("http://127.0.0.1:8100", api_key="hx_…") as helix:
        project = await helix.create_project("hello", phases=[{"name": "say", "command": […]}])
        await helix.ready(project["id"])
        run = await helix.execute(project["id"])
        async for event in helix.stream(run["job_id"]):
            print(event["type"])
        job = await helix.wait_job(run["job_id"], timeout=600)

Lists are iterators that follow the list envelope's `next` page by page. Every POST carries an
`Idempotency-Key` (a new one per call unless `idempotency_key=` names one): repeating a call
with the same key and body returns the first call's answer and does nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import aiohttp

from helix.client import types as t
from helix.client.errors import (
    STATUS_BY_CODE,
    ConnectionFailed,
    HelixClientError,
    Unavailable,
    envelope_error,
)
from helix.client.http import Params, Transport, refused
from helix.client.sse import Parser, lines
from helix.domain.job import TERMINAL

log = logging.getLogger(__name__)
TERMINAL_STATUSES = frozenset(status.value for status in TERMINAL)
Id = str | uuid.UUID
DOWNLOAD_CHUNK = 1024 * 1024


class WaitTimeout(HelixClientError, TimeoutError):
    """`wait_job` gave up: the job was not terminal in time. `job` is how it stood last."""

    def __init__(self, job: t.Job) -> None:
        super().__init__(f"job {job['id']} is still {job['status']}")
        self.job = job


def ident(value: Id) -> str:
    """An id for a path: a UUID, or ValueError before anything is sent."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def fields(**given: Any) -> dict[str, Any]:
    """A body of the fields given (None: not given)."""
    return {name: value for name, value in given.items() if value is not None}


class AsyncClient:
    """A client of one Helix server, with an API key or a token (a JWT, or none to `login`).

    `timeout` bounds each request (a long-poll adds its wait); `retries` is how often a request
    that is safe to repeat is tried again after a dropped connection or a 503;
    `stream_read_timeout` is how long a stream may be silent (the server sends a heartbeat every
    15 s by default) before it is taken for dead and resumed; `stream_retries` is how many
    reconnects in a row a stream makes without receiving an event before it gives up."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.25,
        stream_read_timeout: float = 60.0,
        stream_retries: int = 10,
    ) -> None:
        self._http = Transport(
            base_url,
            api_key=api_key,
            token=token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        self.stream_read_timeout = stream_read_timeout
        self.stream_retries = stream_retries

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Any API call by path (`/api/v1/…`): the decoded JSON answer, None for a 204."""
        return await self._http.request(
            method,
            path,
            params=params,
            body=body,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )

    async def _post(self, path: str, body: Any, idempotency_key: str | None) -> Any:
        return await self.request("POST", path, body=body, idempotency_key=idempotency_key)

    async def pages(self, path: str, params: Params | None = None) -> AsyncIterator[Any]:
        """Every item of a list route, following `next` until `has_more` is false."""
        page: dict[str, Any] = await self.request("GET", path, params=params)
        while True:
            for item in page["items"]:
                yield item
            following = page.get("next")
            if not page.get("has_more") or not following:
                return
            page = await self.request("GET", following)

    # --- auth and users -----------------------------------------------------------------------

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Exchange a password for a JWT, which this client then uses: token, token_type,
        expires_at, expires_in and the user."""
        body = {"username": username, "password": password}
        answer: dict[str, Any] = await self._post("/api/v1/auth/login", body, None)
        self._http.api_key, self._http.token = None, answer["token"]
        return answer

    async def refresh_token(self) -> dict[str, Any]:
        """A fresh JWT for this client's credential (an API key, or a token not yet expired),
        with no more scopes than it has; this client then uses it, as after `login`."""
        answer: dict[str, Any] = await self._post("/api/v1/auth/token", None, None)
        self._http.api_key, self._http.token = None, answer["token"]
        return answer

    async def logout(self) -> None:
        """Revoke the JWT this client uses (streams opened with it end); the client then has
        no credential. An API key is revoked with `revoke_key`."""
        await self._post("/api/v1/auth/logout", None, None)
        self._http.token = None

    async def me(self) -> t.User:
        return cast(t.User, await self.request("GET", "/api/v1/users/me"))

    async def create_user(
        self,
        username: str,
        *,
        password: str | None = None,
        role: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.User:
        """Create a user (admins only)."""
        body = fields(username=username, password=password, role=role)
        return cast(t.User, await self._post("/api/v1/users", body, idempotency_key))

    def list_users(self, *, role: str | None = None, page_size: int = 50) -> AsyncIterator[t.User]:
        """Every user, optionally of one role (admins only)."""
        return self.pages("/api/v1/users", {"role": role, "limit": page_size})

    def list_keys(
        self, *, user_id: Id | None = None, include_revoked: bool = False
    ) -> AsyncIterator[t.ApiKey]:
        """The caller's API keys (an admin may name another user's), by prefix."""
        params = {
            "user_id": ident(user_id) if user_id is not None else None,
            "include_revoked": include_revoked,
        }
        return self.pages("/api/v1/auth/api-keys", params)

    async def create_key(
        self,
        *,
        name: str | None = None,
        scopes: Sequence[str] | None = None,
        expires_at: str | None = None,
        user_id: Id | None = None,
        idempotency_key: str | None = None,
    ) -> t.ApiKey:
        """A new API key; its `key` is in this answer only."""
        body = fields(
            name=name,
            scopes=list(scopes) if scopes is not None else None,
            expires_at=expires_at,
            user_id=ident(user_id) if user_id is not None else None,
        )
        return cast(t.ApiKey, await self._post("/api/v1/auth/api-keys", body, idempotency_key))

    async def revoke_key(self, key_id: Id) -> t.ApiKey:
        return cast(
            t.ApiKey, await self.request("DELETE", f"/api/v1/auth/api-keys/{ident(key_id)}")
        )

    async def create_stream_token(self, *, idempotency_key: str | None = None) -> t.StreamToken:
        """A short-lived token the stream routes accept in `?access_token=` (for a browser's
        EventSource, which cannot send headers)."""
        answer = await self._post("/api/v1/stream-tokens", None, idempotency_key)
        return cast(t.StreamToken, answer)

    # --- projects -----------------------------------------------------------------------------

    async def create_project(
        self,
        name: str,
        *,
        description: str | None = None,
        project_type: str | None = None,
        phases: Sequence[dict[str, Any]] | None = None,
        template: str | None = None,
        max_job_duration: float | None = None,
        idempotency_key: str | None = None,
    ) -> t.Project:
        """A new project (status draft) with `phases`, a `template`'s, or the default's."""
        body = fields(
            name=name,
            description=description,
            project_type=project_type,
            phases=list(phases) if phases is not None else None,
            template=template,
            max_job_duration=max_job_duration,
        )
        return cast(t.Project, await self._post("/api/v1/projects", body, idempotency_key))

    def list_projects(
        self,
        *,
        status: str | None = None,
        project_type: str | None = None,
        archived: bool | Literal["all"] = False,
        page_size: int = 50,
    ) -> AsyncIterator[t.Project]:
        """Every project the caller may see, newest first."""
        params = {
            "status": status,
            "project_type": project_type,
            "archived": archived,
            "limit": page_size,
        }
        return self.pages("/api/v1/projects", params)

    async def get_project(self, project_id: Id, *, as_of: int | str | None = None) -> t.Project:
        """A project with its current phase and latest job; with `as_of` (a log position or an
        RFC 3339 time), as it stood then."""
        path = f"/api/v1/projects/{ident(project_id)}"
        return cast(t.Project, await self.request("GET", path, params={"as_of": as_of}))

    async def update_project(
        self,
        project_id: Id,
        *,
        name: str | None = None,
        description: str | None = None,
        project_type: str | None = None,
        phases: Sequence[dict[str, Any]] | None = None,
        max_job_duration: float | None = None,
    ) -> t.Project:
        body = fields(
            name=name,
            description=description,
            project_type=project_type,
            phases=list(phases) if phases is not None else None,
            max_job_duration=max_job_duration,
        )
        path = f"/api/v1/projects/{ident(project_id)}"
        return cast(t.Project, await self.request("PATCH", path, body=body))

    async def archive_project(self, project_id: Id) -> t.Project:
        """Archive a project (nothing is deleted)."""
        path = f"/api/v1/projects/{ident(project_id)}"
        return cast(t.Project, await self.request("DELETE", path))

    async def unarchive_project(self, project_id: Id) -> t.Project:
        """Bring an archived project back."""
        path = f"/api/v1/projects/{ident(project_id)}/unarchive"
        return cast(t.Project, await self.request("POST", path))

    async def project_status(self, project_id: Id) -> t.ProjectStatus:
        path = f"/api/v1/projects/{ident(project_id)}/status"
        return cast(t.ProjectStatus, await self.request("GET", path))

    def project_history(
        self, project_id: Id, *, after: int = 0, page_size: int = 100
    ) -> AsyncIterator[t.Event]:
        """The events of a project and its jobs, in log order, after a position."""
        path = f"/api/v1/projects/{ident(project_id)}/history"
        return self.pages(path, {"after": after, "limit": page_size})

    async def _project_action(
        self, project_id: Id, action: str, body: dict[str, Any], idempotency_key: str | None
    ) -> Any:
        path = f"/api/v1/projects/{ident(project_id)}/{action}"
        return await self._post(path, body, idempotency_key)

    async def ready(self, project_id: Id, *, idempotency_key: str | None = None) -> t.Project:
        """Mark a project ready to run."""
        return cast(t.Project, await self._project_action(project_id, "ready", {}, idempotency_key))

    async def execute(
        self,
        project_id: Id,
        *,
        start_phase: str | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.Run:
        """Run a ready project: its queued job, to follow with `stream` or `wait_job`."""
        body = fields(start_phase=start_phase, model=model)
        return cast(t.Run, await self._project_action(project_id, "execute", body, idempotency_key))

    async def pause(
        self,
        project_id: Id,
        *,
        reason: str | None = None,
        now: bool | None = None,
        idempotency_key: str | None = None,
    ) -> t.Project:
        body = fields(reason=reason, now=now)
        answer = await self._project_action(project_id, "pause", body, idempotency_key)
        return cast(t.Project, answer)

    async def resume(
        self, project_id: Id, *, reason: str | None = None, idempotency_key: str | None = None
    ) -> t.Project:
        body = fields(reason=reason)
        answer = await self._project_action(project_id, "resume", body, idempotency_key)
        return cast(t.Project, answer)

    async def cancel(
        self, project_id: Id, *, reason: str | None = None, idempotency_key: str | None = None
    ) -> t.Run:
        """Cancel the project's current run."""
        body = fields(reason=reason)
        answer = await self._project_action(project_id, "cancel", body, idempotency_key)
        return cast(t.Run, answer)

    async def quick_action(
        self,
        prompt: str,
        *,
        phases: Sequence[dict[str, Any]] | None = None,
        template: str | None = None,
        model: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> t.Run:
        """Create a project from a prompt, mark it ready and run it, in one call."""
        body = fields(
            prompt=prompt,
            phases=list(phases) if phases is not None else None,
            template=template,
            model=model,
            name=name,
            metadata=metadata,
        )
        return cast(t.Run, await self._post("/api/v1/quick-action", body, idempotency_key))

    # --- discussion ---------------------------------------------------------------------------

    async def discuss(
        self,
        content: str,
        *,
        project_id: Id | None = None,
        role: str | None = None,
        author: str | None = None,
        name: str | None = None,
        project_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.Discussion:
        """Post to a project's discussion; without `project_id`, start a new project."""
        body = fields(
            content=content,
            project_id=ident(project_id) if project_id is not None else None,
            role=role,
            author=author,
            name=name,
            project_type=project_type,
        )
        return cast(t.Discussion, await self._post("/api/v1/discuss", body, idempotency_key))

    async def post_message(
        self,
        project_id: Id,
        content: str,
        *,
        role: str | None = None,
        author: str | None = None,
        run: bool | None = None,
        model: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.PostedMessage:
        """Post a message; with `run=True` also start a run of the project."""
        body = fields(content=content, role=role, author=author, run=run, model=model)
        answer = await self._project_action(project_id, "messages", body, idempotency_key)
        return cast(t.PostedMessage, answer)

    def list_messages(
        self, project_id: Id, *, role: str | None = None, page_size: int = 50
    ) -> AsyncIterator[t.Message]:
        """A project's discussion in posting order."""
        path = f"/api/v1/projects/{ident(project_id)}/messages"
        return self.pages(path, {"role": role, "limit": page_size})

    # --- jobs ---------------------------------------------------------------------------------

    def list_jobs(
        self,
        *,
        project_id: Id | None = None,
        status: str | None = None,
        dead_lettered: bool | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[t.Job]:
        """Every job the caller may see, newest first (`dead_lettered`: only those, or only the
        others)."""
        params = {
            "project_id": ident(project_id) if project_id is not None else None,
            "status": status,
            "dead_lettered": dead_lettered,
            "limit": page_size,
        }
        return self.pages("/api/v1/jobs", params)

    async def get_job(self, job_id: Id, *, as_of: int | str | None = None) -> t.Job:
        """A job with its phases, timings, cost and output tail."""
        path = f"/api/v1/jobs/{ident(job_id)}"
        return cast(t.Job, await self.request("GET", path, params={"as_of": as_of}))

    async def wait_job(self, job_id: Id, *, timeout: float | None = None, poll: int = 30) -> t.Job:
        """The job once it is completed, failed or cancelled: long-polls of at most `poll`
        seconds each (the server's HELIX_MAX_WAIT_SECONDS bounds it, 60 by default) until
        then, or WaitTimeout after `timeout` seconds (None: no limit)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        path = f"/api/v1/jobs/{ident(job_id)}"
        while True:
            wait = poll
            if deadline is not None:
                wait = max(0, min(poll, math.ceil(deadline - loop.time())))
            job = cast(
                t.Job,
                await self.request(
                    "GET", path, params={"wait": wait}, timeout=wait + self._http.timeout
                ),
            )
            if job["status"] in TERMINAL_STATUSES:
                return job
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeout(job)

    async def cancel_job(
        self, job_id: Id, *, reason: str | None = None, idempotency_key: str | None = None
    ) -> t.Job:
        """Cancel a job (repeating it changes nothing)."""
        path = f"/api/v1/jobs/{ident(job_id)}/cancel"
        return cast(t.Job, await self._post(path, fields(reason=reason), idempotency_key))

    async def requeue_job(self, job_id: Id, *, idempotency_key: str | None = None) -> t.Job:
        """Run a failed job again: the phases its failure left undone, with fresh attempts."""
        path = f"/api/v1/jobs/{ident(job_id)}/requeue"
        return cast(t.Job, await self._post(path, None, idempotency_key))

    def output(
        self, job_id: Id, *, phase: str | None = None, after: int = 0, page_size: int = 500
    ) -> AsyncIterator[t.OutputLine]:
        """A job's output lines (of one phase, if named) after the job-wide line `after`."""
        path = f"/api/v1/jobs/{ident(job_id)}/output"
        return self.pages(path, {"phase": phase, "after": after, "limit": page_size})

    def list_files(self, job_id: Id, *, page_size: int = 100) -> AsyncIterator[t.File]:
        """The files the job's phases produced, by path, each in its current version."""
        return self.pages(f"/api/v1/jobs/{ident(job_id)}/files", {"limit": page_size})

    async def download_file(self, job_id: Id, path: str, to: str | os.PathLike[str]) -> Path:
        """Save the stored current version of the job's file at `path` as `to`: streamed to a
        file beside it, checked against the sha256 the server gives (its ETag), and only then
        renamed into place, so `to` is never a partial or altered copy."""
        target = Path(to)
        url = f"/api/v1/jobs/{ident(job_id)}/files/{urllib.parse.quote(path, safe='/')}"
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            async with self._http.download(url) as resp:
                if resp.status >= 300:
                    raise await refused(resp)
                expected = resp.headers.get("ETag", "").strip('"')
                digest = hashlib.sha256()
                with partial.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != expected:
                raise ConnectionFailed(
                    f"{url}: the bytes received do not have the sha256 the server gave"
                )
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    # --- streams ------------------------------------------------------------------------------

    def stream(
        self,
        job_id: Id,
        *,
        after: int | None = None,
        types: Sequence[str] | None = None,
        follow: bool = False,
    ) -> AsyncIterator[t.Event]:
        """A job's events from its first (or after the position `after`), live, ending after
        the job's end (unless `follow`). A dropped connection is resumed from the last event
        received (`Last-Event-ID`): nothing is missed and nothing comes twice."""
        params = {"type": ",".join(types) if types else None, "follow": follow or None}
        return self._follow(f"/api/v1/stream/{ident(job_id)}", params, after)

    def stream_project(
        self, project_id: Id, *, after: int | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[t.Event]:
        """A project's events and its jobs', live (after `after` first); never ends by itself."""
        path = f"/api/v1/projects/{ident(project_id)}/stream"
        return self._follow(path, {"type": ",".join(types) if types else None}, after)

    def stream_events(
        self, *, after: int | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[t.Event]:
        """Every event the caller may see, live (after `after` first); never ends by itself."""
        params = {"type": ",".join(types) if types else None}
        return self._follow("/api/v1/events/stream", params, after)

    async def _follow(self, path: str, params: Params, after: int | None) -> AsyncIterator[t.Event]:
        last = after
        failures = 0
        while True:
            pause: float | None = None
            try:
                async with self._http.stream(path, params, last, self.stream_read_timeout) as resp:
                    if resp.status == 204:
                        return  # resumed after the job's end: the stream is over
                    if resp.status >= 300:
                        error = await refused(resp)
                        if resp.status not in (429, 502, 503, 504):
                            raise error
                        pause = error.retry_after
                    else:
                        parser = Parser()
                        async for line in lines(resp.content.iter_any()):
                            message = parser.feed_line(line)
                            if message is None or message.event == "caught_up":
                                continue
                            if message.event == "done":
                                return
                            if message.event == "error":
                                error = _stream_error(message.data, resp)
                                if not isinstance(error, Unavailable):
                                    raise error
                                pause = float(error.details.get("retry_after") or 1)
                                break
                            if message.id is None or not message.id.isdigit():
                                continue
                            position = int(message.id)
                            if last is not None and position <= last:
                                continue  # already given: never twice
                            last, failures = position, 0
                            yield cast(t.Event, json.loads(message.data))
            except (aiohttp.ClientError, TimeoutError) as exc:
                cause: BaseException | None = exc
            else:
                cause = None
            if failures >= self.stream_retries:
                log.warning("the stream %s gave up after %d reconnects", path, failures)
                raise ConnectionFailed(
                    f"the stream {path} ended {failures + 1} times in a row without an event"
                ) from cause
            log.info("the stream %s ended (%s); resuming after %s", path, cause or "closed", last)
            await asyncio.sleep(self._http.delay(min(failures, 6), pause))
            failures += 1

    # --- events -------------------------------------------------------------------------------

    def list_events(
        self,
        *,
        after: int = 0,
        stream_id: str | None = None,
        project_id: Id | None = None,
        types: Sequence[str] | None = None,
        actor: str | None = None,
        since: str | None = None,
        until: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[t.Event]:
        """The audit log in log order after a position, filtered by stream, project, type
        globs, actor and time (RFC 3339; since inclusive, until exclusive)."""
        params = {
            "after": after,
            "stream_id": stream_id,
            "project_id": ident(project_id) if project_id is not None else None,
            "type": ",".join(types) if types else None,
            "actor": actor,
            "since": since,
            "until": until,
            "limit": page_size,
        }
        return self.pages("/api/v1/events", params)

    async def get_event(self, position: int) -> t.Event:
        return cast(t.Event, await self.request("GET", f"/api/v1/events/{int(position)}"))

    # --- webhooks -----------------------------------------------------------------------------

    async def create_webhook(
        self,
        url: str,
        *,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
        secret: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.Webhook:
        """Register an endpoint; its `secret` is in this answer only."""
        body = fields(
            url=url,
            event_types=list(event_types) if event_types is not None else None,
            description=description,
            enabled=enabled,
            secret=secret,
        )
        return cast(t.Webhook, await self._post("/api/v1/webhooks", body, idempotency_key))

    def list_webhooks(self, *, page_size: int = 50) -> AsyncIterator[t.Webhook]:
        return self.pages("/api/v1/webhooks", {"limit": page_size})

    async def get_webhook(self, endpoint_id: Id) -> t.Webhook:
        return cast(t.Webhook, await self.request("GET", f"/api/v1/webhooks/{ident(endpoint_id)}"))

    async def update_webhook(
        self,
        endpoint_id: Id,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> t.Webhook:
        body = fields(
            url=url,
            event_types=list(event_types) if event_types is not None else None,
            description=description,
            enabled=enabled,
        )
        path = f"/api/v1/webhooks/{ident(endpoint_id)}"
        return cast(t.Webhook, await self.request("PATCH", path, body=body))

    async def delete_webhook(self, endpoint_id: Id) -> None:
        await self.request("DELETE", f"/api/v1/webhooks/{ident(endpoint_id)}")

    async def _webhook_action(
        self, endpoint_id: Id, action: str, body: dict[str, Any], idempotency_key: str | None
    ) -> Any:
        path = f"/api/v1/webhooks/{ident(endpoint_id)}/{action}"
        return await self._post(path, body, idempotency_key)

    async def rotate_webhook_secret(
        self, endpoint_id: Id, *, idempotency_key: str | None = None
    ) -> t.Webhook:
        """A new signing secret (in this answer only); the old one signs beside it a while."""
        answer = await self._webhook_action(endpoint_id, "rotate-secret", {}, idempotency_key)
        return cast(t.Webhook, answer)

    async def test_webhook(
        self, endpoint_id: Id, *, idempotency_key: str | None = None
    ) -> t.Delivery:
        """Queue a `webhook.ping` delivery to the endpoint."""
        answer = await self._webhook_action(endpoint_id, "test", {}, idempotency_key)
        return cast(t.Delivery, answer)

    async def replay_webhook(
        self,
        endpoint_id: Id,
        *,
        since_position: int | None = None,
        since_time: str | None = None,
        until_position: int | None = None,
        types: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> t.Replayed:
        """Deliver the matching events again, from a position (inclusive) or a time."""
        body = fields(
            since_position=since_position,
            since_time=since_time,
            until_position=until_position,
            types=list(types) if types is not None else None,
        )
        answer = await self._webhook_action(endpoint_id, "replay", body, idempotency_key)
        return cast(t.Replayed, answer)

    async def recover_webhook(
        self,
        endpoint_id: Id,
        since: str,
        *,
        until: str | None = None,
        idempotency_key: str | None = None,
    ) -> t.Recovered:
        """Queue again every delivery made since `since` that failed and never succeeded."""
        body = fields(since=since, until=until)
        answer = await self._webhook_action(endpoint_id, "recover", body, idempotency_key)
        return cast(t.Recovered, answer)

    def list_deliveries(
        self, endpoint_id: Id, *, status: str | None = None, page_size: int = 50
    ) -> AsyncIterator[t.Delivery]:
        """An endpoint's deliveries, newest first (status pending, succeeded or dead)."""
        path = f"/api/v1/webhooks/{ident(endpoint_id)}/deliveries"
        return self.pages(path, {"status": status, "limit": page_size})

    async def get_delivery(self, endpoint_id: Id, delivery_id: Id) -> t.Delivery:
        """A delivery with every attempt (`attempt_log`)."""
        path = f"/api/v1/webhooks/{ident(endpoint_id)}/deliveries/{ident(delivery_id)}"
        return cast(t.Delivery, await self.request("GET", path))

    async def retry_delivery(
        self, endpoint_id: Id, delivery_id: Id, *, idempotency_key: str | None = None
    ) -> t.Delivery:
        """Send a delivery again: a new delivery with the same `webhook-id`."""
        action = f"deliveries/{ident(delivery_id)}/retry"
        answer = await self._webhook_action(endpoint_id, action, {}, idempotency_key)
        return cast(t.Delivery, answer)

    # --- workers ------------------------------------------------------------------------------

    def list_workers(
        self, *, online: bool | None = None, page_size: int = 50
    ) -> AsyncIterator[t.Worker]:
        return self.pages("/api/v1/workers", {"online": online, "limit": page_size})

    async def get_worker(self, worker_id: Id) -> t.Worker:
        return cast(t.Worker, await self.request("GET", f"/api/v1/workers/{ident(worker_id)}"))


def _stream_error(data: str, resp: aiohttp.ClientResponse) -> Any:
    """The exception a stream's final `error` event stands for."""
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    status = STATUS_BY_CODE.get(code, 500) if isinstance(code, str) else 500
    request_id = body.get("request_id") if isinstance(body, dict) else None
    return envelope_error(status, error, resp.headers, request_id, data.encode())
