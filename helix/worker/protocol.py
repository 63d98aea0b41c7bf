"""The worker protocol as an HTTP client: register, heartbeat, claim, reports.

Each call returns the parsed answer or raises: `AccessDenied` (401/403: the key is wrong, retrying
will not help), `ProtocolError` (any other refusal, with the server's error code and details) or
`Unavailable` (no answer, a 5xx or a 429: worth retrying later).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import attrs

Report = dict[str, Any]
T = TypeVar("T")

REQUEST_TIMEOUT_S = 30.0
# An upload may take long; only a stall this long (no byte moving either way) fails it.
UPLOAD_STALL_S = 60.0
RELEASE_TIMEOUT_S = 3.0  # a stopping worker waits no longer: the lease then expires instead

# 409 reasons that mean the lease is gone: another worker may hold the job now, or the job
# ended without its worker (it ran past its duration limit).
LEASE_LOST_REASONS = frozenset({"stale_fencing_token", "lease_expired", "terminal"})


class ProtocolError(Exception):
    """The server refused a request."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: Mapping[str, Any] = details or {}

    @property
    def reason(self) -> str | None:
        reason = self.details.get("reason")
        return reason if isinstance(reason, str) else None

    @property
    def lease_lost(self) -> bool:
        return self.status == 409 and self.reason in LEASE_LOST_REASONS


class AccessDenied(ProtocolError):
    """401 or 403: the key is unknown, revoked, or not a worker's."""


class Unavailable(Exception):
    """No usable answer: a connection error, a timeout, a 5xx or a 429."""


@attrs.frozen(kw_only=True)
class Registration:
    worker_id: str
    heartbeat_interval_s: float
    lease_s: float
    token: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class Phase:
    name: str
    ordinal: int
    status: str
    command: tuple[str, ...] | None
    timeout_s: float | None
    capabilities: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=dict)
    prompt: str | None = None


@attrs.frozen(kw_only=True)
class Lease:
    fencing_token: int
    lease_s: float


@attrs.frozen(kw_only=True)
class ArtifactLimits:
    """What the server stores of the phases' files, in bytes (None: no limit); `uploads`
    false for a server that takes no uploads."""

    uploads: bool = False
    max_bytes: int | None = None
    job_max_bytes: int | None = None


@attrs.frozen(kw_only=True)
class Claim:
    job_id: str
    project_id: str
    attempt: int
    max_attempts: int
    phases: tuple[Phase, ...]
    lease: Lease
    job: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    artifacts: ArtifactLimits = ArtifactLimits()


@attrs.frozen(kw_only=True)
class JobStatus:
    """What a heartbeat answer says of the job the worker runs."""

    job_id: str
    cancel_requested: bool
    lease_valid: bool


@attrs.frozen(kw_only=True)
class ReportAnswer:
    cancel_requested: bool
    fencing_token: int | None


class Client:
    def __init__(self, server: str, key: str, session: aiohttp.ClientSession) -> None:
        self.server = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}"}
        self._session = session

    async def register(
        self,
        *,
        name: str,
        hostname: str,
        capabilities: Sequence[str],
        resources: Mapping[str, Any],
    ) -> Registration:
        body = {
            "name": name,
            "hostname": hostname,
            "capabilities": list(capabilities),
            "resources": dict(resources),
        }
        data = await self._post("/api/v1/workers/register", body) or {}
        return _parsed(
            lambda: Registration(
                worker_id=str(data["worker_id"]),
                heartbeat_interval_s=float(data["heartbeat_interval_s"]),
                lease_s=float(data["lease_s"]),
                token=(data.get("credentials") or {}).get("token"),
            )
        )

    async def heartbeat(
        self,
        worker_id: str,
        *,
        status: str,
        current_job: tuple[str, int] | None,
        resources: Mapping[str, Any],
    ) -> JobStatus | None:
        body = {
            "worker_id": worker_id,
            "status": status,
            "current_job": (
                None
                if current_job is None
                else {"job_id": current_job[0], "fencing_token": current_job[1]}
            ),
            "resources": dict(resources),
        }
        data = await self._post("/api/v1/workers/heartbeat", body) or {}
        job = data.get("job")
        if job is None:
            return None
        return _parsed(
            lambda: JobStatus(
                job_id=str(job["job_id"]),
                cancel_requested=bool(job.get("cancel_requested", False)),
                lease_valid=bool(job.get("lease_valid", True)),
            )
        )

    async def claim(self, worker_id: str, *, wait: int) -> Claim | None:
        """A job under a fresh lease, or None when none came within `wait` seconds."""
        data = await self._post(
            f"/api/v1/workers/{worker_id}/claim",
            {},
            params={"wait": str(wait)},
            timeout=wait + REQUEST_TIMEOUT_S,
        )
        return None if data is None else _parsed(lambda: _claim(data))

    async def report(
        self,
        job_id: str,
        fencing_token: int,
        reports: Sequence[Report],
        *,
        idempotency_key: str | None = None,
    ) -> ReportAnswer:
        body = {"fencing_token": fencing_token, "reports": list(reports)}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        data = await self._post(f"/api/v1/jobs/{job_id}/reports", body, headers=headers) or {}
        lease = data.get("lease") or {}
        job = data.get("job") or {}
        token = lease.get("fencing_token")
        return ReportAnswer(
            cancel_requested=bool(data.get("cancel_requested") or job.get("cancel_requested")),
            fencing_token=token if isinstance(token, int) else None,
        )

    async def context(self, job_id: str, fencing_token: int) -> Mapping[str, Any]:
        """What the job's phases may know of their project: its name, description, type,
        discussion, and the job's phases so far (for the phase's context file)."""
        data = await self._request(
            "GET",
            f"/api/v1/jobs/{job_id}/context",
            None,
            params={"fencing_token": str(fencing_token)},
        )
        if not isinstance(data, dict):
            raise Unavailable("the server's job context is not an object")
        return data

    async def upload(
        self,
        job_id: str,
        fencing_token: int,
        *,
        phase: str,
        path: str,
        size: int,
        sha256: str,
        change: str | None,
        body: AsyncIterable[bytes],
    ) -> Mapping[str, Any]:
        """Upload a file of the running phase, streamed from `body`; the stored file."""
        params = {
            "fencing_token": str(fencing_token),
            "phase": phase,
            "size": str(size),
            "sha256": sha256,
            **({"change": change} if change else {}),
        }
        quoted = urllib.parse.quote(path, safe="/")
        data = await self._request(
            "PUT",
            f"/api/v1/jobs/{job_id}/files/{quoted}",
            None,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
            raw=body,
            timeout=aiohttp.ClientTimeout(sock_read=UPLOAD_STALL_S, sock_connect=REQUEST_TIMEOUT_S),
        )
        if not isinstance(data, dict):
            raise Unavailable("the server's answer to an upload is not an object")
        return data

    async def release(self, job_id: str, fencing_token: int) -> None:
        """Hand the job back: this worker is stopping and will not finish it."""
        body = {"fencing_token": fencing_token}
        await self._post(f"/api/v1/jobs/{job_id}/release", body, timeout=RELEASE_TIMEOUT_S)

    async def _post(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> Any:
        return await self._request(
            "POST", path, body, params=params, headers=headers, timeout=timeout
        )

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | aiohttp.ClientTimeout = REQUEST_TIMEOUT_S,
        raw: AsyncIterable[bytes] | None = None,
    ) -> Any:
        data: Any = raw if raw is not None else None if body is None else json.dumps(body)
        if not isinstance(timeout, aiohttp.ClientTimeout):
            timeout = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._session.request(
                method,
                self.server + path,
                data=data,
                params=params,
                headers={**self._headers, "Content-Type": "application/json", **(headers or {})},
                timeout=timeout,
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise Unavailable(f"{path}: {type(exc).__name__}: {exc}") from exc
        if status == 204:
            return None
        if status >= 500 or status == 429:
            raise Unavailable(f"{path}: HTTP {status}")
        if status >= 400:
            raise _error(status, text)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise Unavailable(f"{path}: HTTP {status} with a body that is not JSON") from exc


def _error(status: int, text: str) -> ProtocolError:
    code, message = f"HTTP_{status}", text[:500]
    details: Any = {}
    try:
        error = json.loads(text)["error"]
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        pass
    kind = AccessDenied if status in (401, 403) else ProtocolError
    return kind(status, code, message, details if isinstance(details, dict) else {})


def _parsed(build: Callable[[], T]) -> T:
    try:
        return build()
    except (KeyError, TypeError, ValueError) as exc:
        raise Unavailable(f"the server's answer is malformed: {exc!r}") from exc


def _claim(data: Mapping[str, Any]) -> Claim:
    job, lease = data["job"], data["lease"]
    limits = data.get("artifacts")
    return Claim(
        job_id=str(job["id"]),
        project_id=str(job["project_id"]),
        attempt=int(job.get("attempt", 1)),
        max_attempts=int(job.get("max_attempts", 1)),
        phases=tuple(sorted((_phase(p) for p in data["phases"]), key=lambda p: p.ordinal)),
        lease=Lease(fencing_token=int(lease["fencing_token"]), lease_s=float(lease["lease_s"])),
        job=job,
        artifacts=ArtifactLimits()
        if not isinstance(limits, dict)
        else ArtifactLimits(
            uploads=True,
            max_bytes=_optional_int(limits.get("max_bytes")),
            job_max_bytes=_optional_int(limits.get("job_max_bytes")),
        ),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _phase(data: Mapping[str, Any]) -> Phase:
    command = data.get("command")
    timeout = data.get("timeout_s")
    return Phase(
        name=str(data["name"]),
        ordinal=int(data["ordinal"]),
        status=str(data["status"]),
        command=None if command is None else tuple(str(arg) for arg in command),
        timeout_s=None if timeout is None else float(timeout),
        capabilities=tuple(data.get("capabilities") or ()),
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        prompt=None if data.get("prompt") is None else str(data["prompt"]),
    )
