"""The protected section of an export: the credentials the log does not hold.

Secrets are kept out of event data, because events are shown to auditors and replayed to
subscribers for ever. Password hashes (scrypt, as stored) are in `user_passwords`; webhook
signing secrets (the current one and, during a rotation, the previous one) in
`webhook_secrets`; the server's own secrets in `helix_secrets` (the JWT signing secret, and the
phase secrets key unless HELIX_SECRETS_KEY sets it). Each is written in the same transaction as
the event that says it changed, and no projection owns them, so a rebuild never touches them.

An export carries them after the events, one line per row:
`{"protected": {"table": "user_passwords", "row": {...}}}`, the row as PostgreSQL's own JSON of
it (`to_jsonb`), so an import restores it exactly (`jsonb_populate_record`). An import accepts
a credential only for an aggregate whose stream it has just loaded (a password for a user the
log created), so a file cannot plant a login for a user that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
import attrs


@attrs.frozen(kw_only=True)
class CredentialTable:
    name: str
    key: str  # the primary key column
    # The stream the row belongs to, as a prefix of its key (None: the server's own).
    stream_prefix: str | None


TABLES: tuple[CredentialTable, ...] = (
    CredentialTable(name="user_passwords", key="user_id", stream_prefix="user-"),
    CredentialTable(name="webhook_secrets", key="endpoint_id", stream_prefix="webhook-"),
    CredentialTable(name="helix_secrets", key="name", stream_prefix=None),
)
BY_NAME: dict[str, CredentialTable] = {t.name: t for t in TABLES}
SECTION = "protected"
STREAM_EXISTS = "SELECT EXISTS (SELECT 1 FROM streams WHERE stream_id = $1)"


class InvalidCredential(ValueError):
    """A protected line that does not describe a credential this store keeps."""


def _select(table: CredentialTable) -> str:
    return f"SELECT to_jsonb(t) AS row FROM {table.name} t ORDER BY t.{table.key}"


async def _columns(conn: asyncpg.Connection, table: CredentialTable) -> list[str]:
    found = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        table.name,
    )
    return [r["attname"] for r in found]


def _upsert(table: CredentialTable, columns: Iterable[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != table.key)
    return (
        f"INSERT INTO {table.name} "
        f"SELECT * FROM jsonb_populate_record(NULL::{table.name}, $1::jsonb) "
        f"ON CONFLICT ({table.key}) DO UPDATE SET {updates}"
    )


async def rows(pool: asyncpg.Pool | asyncpg.Connection) -> list[tuple[str, dict[str, Any]]]:
    """Every credential row, by table, in key order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for table in TABLES:
        for record in await pool.fetch(_select(table)):
            row = record["row"]
            found.append((table.name, row if isinstance(row, dict) else json.loads(row)))
    return found


def line(table: str, row: Mapping[str, Any]) -> str:
    return json.dumps({SECTION: {"table": table, "row": row}}, separators=(",", ":")) + "\n"


def parse(raw: Mapping[str, Any]) -> tuple[CredentialTable, dict[str, Any]]:
    """A protected line's table and row; InvalidCredential if it is not one."""
    section = raw.get(SECTION)
    if not isinstance(section, dict) or set(section) != {"table", "row"}:
        raise InvalidCredential("a protected line is {'protected': {'table', 'row'}}")
    table = BY_NAME.get(section["table"]) if isinstance(section["table"], str) else None
    if table is None:
        known = ", ".join(BY_NAME)
        raise InvalidCredential(f"unknown credential table {section['table']!r} (known: {known})")
    row = section["row"]
    if not isinstance(row, dict) or not isinstance(row.get(table.key), str):
        raise InvalidCredential(f"a {table.name} row needs its {table.key!r}")
    return table, row


async def restore(
    conn: asyncpg.Connection, credentials: Iterable[tuple[CredentialTable, dict[str, Any]]]
) -> int:
    """Write the credentials in the caller's transaction, after the events are loaded; each
    one of an aggregate must belong to a stream the log holds. How many were restored."""
    count = 0
    columns: dict[str, list[str]] = {}
    for table, row in credentials:
        if table.stream_prefix is not None:
            stream = table.stream_prefix + row[table.key]
            if not await conn.fetchval(STREAM_EXISTS, stream):
                raise InvalidCredential(
                    f"a {table.name} row for {stream}, which the log does not hold"
                )
        if table.name not in columns:
            columns[table.name] = await _columns(conn, table)
        unknown = set(row) - set(columns[table.name])
        if unknown:
            raise InvalidCredential(f"a {table.name} row has unknown columns {sorted(unknown)}")
        try:
            await conn.execute(_upsert(table, columns[table.name]), row)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise InvalidCredential(f"a {table.name} row does not fit: {exc}") from None
        count += 1
    return count
