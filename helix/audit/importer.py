"""`helix events import FILE`: load an export into an empty store, exactly as it was.

Rows go in already positioned and hashed (so the sequencer, which only handles rows without a
position, never touches them) with their original event ids, versions and recorded_at. The
whole load is one transaction that first locks out writers and checks the store is empty, and
every line is checked on the way in: positions dense from 1, stream versions without gaps, and
each hash equal to the chain link recomputed from the line. Any failure rolls everything back,
so a refused or broken import changes nothing. After the commit the chain is verified again from
the database and every projection is rebuilt from the imported log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import asyncpg
import attrs

from helix.audit import credentials
from helix.errors import Conflict, ValidationError
from helix.eventstore import ChainReport, EventStore, verify_chain
from helix.eventstore.chain import GENESIS, link
from helix.eventstore.sql import QUERIES
from projections import registry
from projections.rebuild import Progress, RebuildReport, rebuild

Row = dict[str, Any]


class StoreNotEmpty(Conflict):
    """The target store already holds events; an import never merges logs."""


class InvalidExport(ValidationError):
    """A line of the file is not a faithful export line (its `line` detail says which)."""


@attrs.frozen(kw_only=True)
class LoadReport:
    events: int
    head: int
    head_hash: str
    credentials: int = 0  # rows of the protected section restored


@attrs.frozen(kw_only=True)
class ImportReport:
    load: LoadReport
    chain: ChainReport
    rebuilt: tuple[RebuildReport, ...]

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.chain.head_hash == self.load.head_hash


def parse_json(text: str, line: int) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidExport(f"line {line} is not an export line: {exc}", line=line) from None
    if not isinstance(raw, dict):
        raise InvalidExport(f"line {line} is not an export line: not a JSON object", line=line)
    return raw


def parse_line(text: str | dict[str, Any], line: int) -> Row:
    """One export line as an event row (the column types asyncpg and the chain expect)."""
    raw = parse_json(text, line) if isinstance(text, str) else text
    try:
        recorded_at = datetime.fromisoformat(raw["recorded_at"])
        if recorded_at.tzinfo is None:
            raise ValueError("recorded_at has no offset")
        project_id = raw["project_id"]
        row: Row = {
            "position": _int(raw["position"]),
            "event_id": uuid.UUID(raw["event_id"]),
            "stream_id": _str(raw["stream_id"]),
            "stream_type": _str(raw["stream_type"]),
            "version": _int(raw["version"]),
            "project_id": None if project_id is None else uuid.UUID(project_id),
            "type": _str(raw["type"]),
            "schema_version": _int(raw["schema_version"]),
            "data": _object(raw["data"]),
            "metadata": _object(raw["metadata"]),
            "recorded_at": recorded_at,
            "hash": bytes.fromhex(raw["hash"]),
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InvalidExport(f"line {line} is not an export line: {detail}", line=line) from None
    return row


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {value!r}")
    return value


class _Checker:
    """Follows the lines: dense positions from 1, versions without gaps, the hash chain."""

    def __init__(self) -> None:
        self.position = 0
        self.previous = GENESIS
        self.versions: dict[str, int] = {}

    def check(self, row: Mapping[str, Any], line: int) -> None:
        expected = self.position + 1
        if row["position"] != expected:
            raise InvalidExport(
                f"line {line} has position {row['position']}, expected {expected} "
                "(an import needs a complete, unfiltered export)",
                line=line,
            )
        stream, version = row["stream_id"], row["version"]
        if version != self.versions.get(stream, 0) + 1:
            raise InvalidExport(
                f"line {line}: {stream} jumps to version {version}", line=line, stream_id=stream
            )
        digest = link(self.previous, expected, row)
        if digest != row["hash"]:
            raise InvalidExport(
                f"line {line}: the hash does not match the event (position {expected})",
                line=line,
                position=expected,
            )
        self.versions[stream] = version
        self.position, self.previous = expected, digest


async def load(
    pool: asyncpg.Pool,
    lines: Iterable[str],
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Insert the export's events into an empty store, in one transaction; StoreNotEmpty or
    InvalidExport (and nothing changed) otherwise."""
    checker = _Checker()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["import_lock"])
        if not await conn.fetchval(QUERIES["import_store_is_empty"]):
            raise StoreNotEmpty("the store already holds events; import only into an empty one")
        batch: list[Row] = []
        protected: list[tuple[credentials.CredentialTable, dict[str, Any]]] = []
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            raw = parse_json(text, number)
            if credentials.SECTION in raw:
                try:
                    protected.append(credentials.parse(raw))
                except credentials.InvalidCredential as exc:
                    raise InvalidExport(f"line {number}: {exc}", line=number) from None
                continue
            row = parse_line(raw, number)
            checker.check(row, number)
            batch.append(row)
            if len(batch) >= batch_size:
                await _insert(conn, batch)
                batch = []
                if progress is not None:
                    progress(checker.position)
        if batch:
            await _insert(conn, batch)
        await conn.execute(QUERIES["import_streams"])
        await conn.fetchrow(QUERIES["import_head"], checker.position, checker.previous)
        try:
            restored = await credentials.restore(conn, protected)
        except credentials.InvalidCredential as exc:
            raise InvalidExport(f"the protected section: {exc}") from None
    if progress is not None:
        progress(checker.position)
    return LoadReport(
        events=checker.position,
        head=checker.position,
        head_hash=checker.previous.hex(),
        credentials=restored,
    )


async def _insert(conn: asyncpg.Connection, batch: list[Row]) -> None:
    columns = (
        "event_id", "stream_id", "stream_type", "version", "project_id", "type",
        "schema_version", "data", "metadata", "recorded_at", "position", "hash",
    )  # fmt: skip
    try:
        await conn.execute(QUERIES["import_events"], *([r[c] for r in batch] for c in columns))
    except asyncpg.UniqueViolationError as exc:
        raise InvalidExport(f"the export repeats an event: {exc.detail or exc}") from None


async def import_log(
    store: EventStore,
    lines: Iterable[str],
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    rebuild_progress: Callable[[Progress], None] | None = None,
) -> ImportReport:
    """Load, verify the chain from the database, and rebuild every projection."""
    loaded = await load(store.pool, lines, batch_size=batch_size, progress=progress)
    chain = await verify_chain(store.pool)
    rebuilt = []
    for projection in registry.ALL:
        rebuilt.append(await rebuild(store, projection, progress=rebuild_progress))
    return ImportReport(load=loaded, chain=chain, rebuilt=tuple(rebuilt))
