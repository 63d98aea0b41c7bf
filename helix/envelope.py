"""The JSON form of a recorded event: one envelope, with a named variant for each consumer.

- `chain`: the document whose canonical bytes the hash chain covers. It is frozen: a change of
  one byte breaks `helix audit verify` for every log already written, so `recorded_at` keeps
  the form it has always had there (UTC, `+00:00`, six fraction digits).
- `export`: `chain` plus the event's hash, one line of `helix events export`. Same fields and
  forms as `chain`, so an import recomputes every link from the line alone.
- `public`: what the REST API (`/events`, history), the SSE and WebSocket streams show: every
  envelope field, times in RFC 3339 UTC with `Z` and six fraction digits (`rfc3339`). The
  streams have PostgreSQL render it (`PUBLIC_SQL`), the same document as text.
- `webhook`: `public` plus the Standard Webhooks keys `id` (the event id) and `timestamp`
  (the same instant as `recorded_at`).

It is a module of its own, beside `helix.serialization`, because the event store's hash chain
uses it and `helix.serialization` imports the event store. Everything here reads the envelope
through `_reader`, so a stored row and a `RecordedEvent` render the same.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helix.eventstore.records import RecordedEvent


def rfc3339(at: datetime | None) -> str | None:
    """The one public form of an instant: `2026-01-02T03:04:05.678901Z`, always six digits."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _chain_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _reader(event: RecordedEvent | Mapping[str, Any]) -> Callable[[str], Any]:
    """How to read the envelope's fields, decided once per event (the SSE replay renders tens
    of thousands a second, and an ABC check per field was most of the cost)."""
    # A stored row (a dict, or an asyncpg Record, which is no Mapping) is read by key.
    if isinstance(event, Mapping) or hasattr(event, "__getitem__"):
        return event.__getitem__
    return functools.partial(getattr, event)


def _ident(value: Any) -> str | None:
    return None if value is None else str(value)


def _common(field: Callable[[str], Any]) -> dict[str, Any]:
    return {
        "event_id": str(field("event_id")),
        "stream_id": field("stream_id"),
        "stream_type": field("stream_type"),
        "version": field("version"),
        "project_id": _ident(field("project_id")),
        "type": field("type"),
        "schema_version": field("schema_version"),
        "data": field("data"),
        "metadata": field("metadata"),
    }


def chain(position: int, event: RecordedEvent | Mapping[str, Any]) -> dict[str, Any]:
    """The hashed document; `position` is passed apart because the sequencer hashes a row
    while it assigns the row its position."""
    field = _reader(event)
    return {
        "position": position,
        **_common(field),
        "recorded_at": _chain_time(field("recorded_at")),
    }


def chain_bytes(position: int, event: RecordedEvent | Mapping[str, Any]) -> bytes:
    doc = chain(position, event)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def export(row: Mapping[str, Any]) -> dict[str, Any]:
    """One export line's object: a sequenced, hashed event row."""
    return {**chain(row["position"], row), "hash": bytes(row["hash"]).hex()}


def public(event: RecordedEvent | Mapping[str, Any]) -> dict[str, Any]:
    field = _reader(event)
    return {
        "position": field("position"),
        **_common(field),
        "recorded_at": rfc3339(field("recorded_at")),
    }


# `public` in SQL, over the columns of an `events` row: the streams write this text to clients
# as PostgreSQL renders it, with no decoding and encoding per event. The same fields in the same
# forms as `public` (tests compare the two for random events).
PUBLIC_SQL = (
    "json_build_object('position', position, 'event_id', event_id, 'stream_id', stream_id,"
    " 'stream_type', stream_type, 'version', version, 'project_id', project_id, 'type', type,"
    " 'schema_version', schema_version, 'data', data, 'metadata', metadata, 'recorded_at',"
    " to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
)


def webhook(event: RecordedEvent | Mapping[str, Any]) -> dict[str, Any]:
    body = public(event)
    return {"id": body["event_id"], "timestamp": body["recorded_at"], **body}
