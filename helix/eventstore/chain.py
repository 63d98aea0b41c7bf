"""The hash chain over the log: hash(n) = sha256(hash(n-1) || canonical bytes of event n)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

GENESIS = b"\x00" * 32


def canonical_bytes(position: int, row: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed for one event; position is included, so reordering shows."""
    project_id = row["project_id"]
    doc = {
        "position": position,
        "event_id": str(row["event_id"]),
        "stream_id": row["stream_id"],
        "stream_type": row["stream_type"],
        "version": row["version"],
        "project_id": None if project_id is None else str(project_id),
        "type": row["type"],
        "schema_version": row["schema_version"],
        "data": row["data"],
        "metadata": row["metadata"],
        "recorded_at": row["recorded_at"].astimezone(UTC).isoformat(timespec="microseconds"),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link(previous: bytes, position: int, row: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(previous + canonical_bytes(position, row)).digest()
