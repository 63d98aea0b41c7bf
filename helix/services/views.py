"""The JSON forms of read-model rows: ids as strings, times in RFC 3339 (UTC).

An event's JSON is not here: it is `helix.envelope`'s.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from helix.domain.job import TERMINAL, Artifact, JobPriority, Resources, Waiting
from helix.envelope import rfc3339

Row = Mapping[str, Any]


def ident(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def stream_url(job_id: UUID) -> str:
    return f"/api/v1/stream/{job_id}"


def file_url(job_id: UUID, path: str) -> str:
    """Where a job's stored file is downloaded: its path, each part percent-encoded."""
    return f"/api/v1/jobs/{job_id}/files/{urllib.parse.quote(path, safe='/')}"


def artifact_view(job_id: UUID, artifact: Artifact) -> dict[str, Any]:
    """One of a job's files: its current version, stored (with its download URL) or not (with
    the reason)."""
    return {
        "path": artifact.path,
        "phase": artifact.phase,
        "attempt": artifact.attempt,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "change": artifact.change,
        "stored": artifact.stored,
        "reason": artifact.reason,
        "download_url": file_url(job_id, artifact.path) if artifact.stored else None,
        "created_at": rfc3339(artifact.created_at),
        "updated_at": rfc3339(artifact.updated_at),
    }


def project_view(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["project_id"]),
        "name": row["name"],
        "description": row["description"],
        "project_type": row["project_type"],
        "owner": row["owner"],
        "status": row["status"],
        "archived": row["archived"],
        "phases": row["phases"],
        "latest_job_id": ident(row["latest_job_id"]),
        "message_count": row["message_count"],
        "max_job_duration": row["max_job_duration_s"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
        "version": row["version"],
    }


def waiting_view(waiting: Waiting | None) -> dict[str, Any] | None:
    if waiting is None:
        return None
    return {"reason": waiting.reason, "capabilities": list(waiting.capabilities)}


def job_view(row: Row, waiting: Waiting | None = None) -> dict[str, Any]:
    """`waiting`: why the queued job can be claimed by no online worker (None: it can, or it
    is not queued)."""
    return {
        "id": str(row["job_id"]),
        "project_id": str(row["project_id"]),
        "owner": row["owner"],
        "status": row["status"],
        "start_phase": row["start_phase"],
        "model": row["model"],
        "requested_by": row["requested_by"],
        "worker_id": row["worker_id"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "max_duration_s": row["max_duration_s"],
        "priority": JobPriority.of_rank(row["priority"]).value,
        "progress": row["progress"],
        "cost": {"tokens": row["cost_tokens"], "usd": row["cost_usd"]},
        "error": row["error"],
        "cancel_requested": row["cancel_requested"],
        "cancel_reason": row["cancel_reason"],
        "pause_requested": row["pause_requested"],
        "waiting": waiting_view(waiting),
        "dead_lettered": row["dead_lettered"],
        "lease_expires_at": rfc3339(row["lease_expires_at"]),
        "not_before": rfc3339(row["not_before"]),
        "created_at": rfc3339(row["created_at"]),
        "started_at": rfc3339(row["started_at"]),
        "finished_at": rfc3339(row["finished_at"]),
        "updated_at": rfc3339(row["updated_at"]),
        "version": row["version"],
        "stream_url": stream_url(row["job_id"]),
    }


def phase_resources(row: Row) -> Resources | None:
    """The phase's latest run's resource usage (NULL columns: none reported)."""
    if row["cpu_s"] is None:
        return None
    return Resources(
        cpu_s=row["cpu_s"],
        max_rss_bytes=row["max_rss_bytes"],
        read_bytes=row["read_bytes"],
        write_bytes=row["write_bytes"],
    )


def resources_view(resources: Resources | None) -> dict[str, float | int] | None:
    return None if resources is None else resources.fields()


def phase_view(row: Row) -> dict[str, Any]:
    started, finished = row["started_at"], row["finished_at"]
    duration = (finished - started).total_seconds() if started and finished else None
    return {
        "name": row["name"],
        "ordinal": row["ordinal"],
        "status": row["status"],
        "command": row["command"],
        "timeout_s": row["timeout_s"],
        "capabilities": row["capabilities"],
        "started_at": rfc3339(started),
        "finished_at": rfc3339(finished),
        "duration_s": duration,
        "output_lines": row["output_lines"],
        "files": row["files"],
        "cost": {"tokens": row["cost_tokens"], "usd": row["cost_usd"]},
        "resources": resources_view(phase_resources(row)),
        "exit_code": row["exit_code"],
        "error": row["error"],
        "skip_reason": row["skip_reason"],
    }


def current_phase(job: Row | None, phases: list[Row]) -> str | None:
    """The phase running now; for a job still to run, the next one; else None."""
    if job is None:
        return None
    running = next((p["name"] for p in phases if p["status"] == "running"), None)
    if running is not None or job["status"] in TERMINAL:
        return running
    return next((p["name"] for p in phases if p["status"] == "pending"), None)


def line_view(row: Row) -> dict[str, Any]:
    return {
        "n": row["seq"],
        "phase": row["phase"],
        "line_no": row["line_no"],
        "attempt": row["attempt"],
        "stream": row["stream"],
        "line": row["line"],
        "at": rfc3339(row["at"]),
    }


def message_view(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["message_id"]),
        "project_id": str(row["project_id"]),
        "seq": row["seq"],
        "role": row["role"],
        "author": row["author"],
        "content": row["content"],
        "at": rfc3339(row["at"]),
    }
