"""Idempotency records: a command and the response it was answered with commit together.

A request that carries an idempotency key hands the unit of work an `Idempotency`. The unit of
work reserves the key inside the command's own transaction (before it decides), and when the
command appended events it keeps that transaction open: the edge renders its response, stores
it with `finish`, and only then does the transaction commit. So a committed command always has
its stored response and an uncommitted one never does, and a key whose request died is free as
soon as the database ends its transaction. A concurrent request with the same key waits on the
key's primary key until the first one's transaction ends, then replays its response or, if it
rolled back, runs the command itself.

Errors are not stored: a command refused (409, 422, …) rolls back with its reservation, so a
corrected retry with the same key runs.

A stored body can hold a credential shown once (a new API key, a webhook secret, a login's
token), so it is sealed (`helix.auth.sealing`) bound to the record's scope and key: a dump or a
backup of the table holds no live secret, and a body copied onto another record does not open.
A sealed body is marked by the prefix `SEALED`, which no plaintext response begins with; a body
without it was stored in plaintext by an older release and is replayed as it is. A body that
does not open (its key left the ring, or it was altered) is a 409 naming the reason: the command
committed, and its response cannot be shown again. The stored headers (content type, location,
position, ETag) carry no credential and are kept as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
import attrs
from asyncpg.transaction import Transaction

from helix.auth.sealing import Sealer, SecretError
from helix.errors import Conflict
from helix.sql import load

SQL = load("helix.services", "idempotency.sql")
HEADER = "Idempotency-Key"
# Begins every sealed body; a NUL byte begins no JSON or text response.
SEALED = b"\x00helix-sealed\x00"


@attrs.frozen(kw_only=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Replay(Exception):
    """The key's command committed already: answer with its stored response."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__("replay the stored response")
        self.response = response


class Idempotency:
    """One request's key: `scope` names the caller, the method and the path; `fingerprint` the
    body. Not shared between requests."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sealer: Sealer,
        *,
        scope: str,
        key: str,
        fingerprint: str,
        ttl_seconds: float,
    ) -> None:
        self.pool = pool
        self.sealer = sealer
        self.scope = scope
        self.key = key
        self.fingerprint = fingerprint
        self.ttl = float(ttl_seconds)
        self.conn: asyncpg.Connection | None = None
        self.reserved = False  # a unit of work took the key in its transaction
        self._transaction: Transaction | None = None
        self._after_commit: list[Callable[[], object]] = []

    @property
    def open(self) -> bool:
        """Whether a command appended and its transaction waits for the response."""
        return self.conn is not None

    def _check(self, row: Any) -> None:
        if row["fingerprint"] != self.fingerprint:
            raise Conflict(
                f"this {HEADER} was used for a different request", idempotency_key=self.key
            )

    def _associated_data(self) -> bytes:
        # The key is printable (the edge checks it), so NUL separates the parts unambiguously.
        return f"helix idempotent response\x00{self.scope}\x00{self.key}".encode()

    def _seal(self, body: bytes) -> bytes:
        sealed = self.sealer.seal_bytes(body, associated_data=self._associated_data())
        return SEALED + sealed.encode("ascii")

    def _stored(self, row: Any) -> StoredResponse:
        body: bytes = row["body"]
        if body.startswith(SEALED):
            try:
                body = self.sealer.open_bytes(
                    body[len(SEALED) :].decode("ascii", "replace"),
                    associated_data=self._associated_data(),
                    of="of this stored response",
                    elsewhere="another idempotency key",
                )
            except SecretError as refused:
                raise Conflict(
                    f"the request of this {HEADER} committed, but its stored response cannot be "
                    f"shown again: {refused}",
                    idempotency_key=self.key,
                    reason=str(refused),
                ) from None
        return StoredResponse(status=row["status"], headers=dict(row["headers"] or {}), body=body)

    async def stored(self) -> StoredResponse | None:
        """The committed response for this key, if any (409 if the key was used for another
        body)."""
        row = await self.pool.fetchrow(SQL["find"], self.scope, self.key, self.ttl)
        if row is None:
            return None
        self._check(row)
        return self._stored(row)

    async def reserve(self, conn: asyncpg.Connection) -> None:
        """In the command's transaction, before it decides: take the key, or raise `Replay` /
        `Conflict` when a committed request holds it."""
        args = (self.scope, self.key, self.fingerprint, self.ttl)
        self.reserved = True
        if await conn.fetchval(SQL["reserve"], *args):
            return
        # Read committed: this statement sees the record the waited-for transaction committed.
        row = await conn.fetchrow(SQL["find"], self.scope, self.key, self.ttl)
        if row is None:  # a record that expired between the two statements
            raise Conflict(f"this {HEADER} is in use; retry", idempotency_key=self.key)
        self._check(row)
        raise Replay(self._stored(row))

    async def release(self, conn: asyncpg.Connection) -> None:
        """A unit of work that appended nothing leaves no record behind."""
        await conn.execute(SQL["release"], self.scope, self.key)

    def adopt(
        self,
        conn: asyncpg.Connection,
        transaction: Transaction,
        after_commit: Callable[[], object],
    ) -> None:
        """Take over a unit of work's open transaction; `after_commit` runs once it commits."""
        self.conn, self._transaction = conn, transaction
        self.after_commit(after_commit)

    def after_commit(self, effect: Callable[[], object]) -> None:
        self._after_commit.append(effect)

    async def finish(self, response: StoredResponse | None) -> None:
        """Store `response` (None: store nothing, e.g. a `no-store` answer) and commit."""
        conn, transaction = self.conn, self._transaction
        assert conn is not None and transaction is not None
        try:
            if response is None:
                await conn.execute(SQL["release"], self.scope, self.key)
            else:
                await conn.execute(
                    SQL["complete"],
                    self.scope,
                    self.key,
                    response.status,
                    response.headers,
                    self._seal(response.body),
                )
            await transaction.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.abandon()
            raise
        await self._give_back()
        for effect in self._after_commit:
            effect()

    async def abandon(self) -> None:
        """Roll the open transaction back: the command and its reservation vanish together."""
        transaction = self._transaction
        if transaction is None:
            return
        try:
            await asyncio.shield(transaction.rollback())
        finally:
            await self._give_back()

    async def _give_back(self) -> None:
        conn, self.conn, self._transaction = self.conn, None, None
        if conn is not None:
            await asyncio.shield(self.pool.release(conn))

    async def store_after(self, response: StoredResponse) -> StoredResponse | None:
        """For a request whose writes did not go through the unit of work: record its response
        after them (a crash in between loses the record, not the writes). A response an earlier
        request of this key committed wins: it comes back, to be answered instead."""
        stored = await self.pool.fetchval(
            SQL["store"],
            self.scope,
            self.key,
            self.fingerprint,
            response.status,
            response.headers,
            self._seal(response.body),
            self.ttl,
        )
        return None if stored else await self.stored()


async def purge_expired(pool: asyncpg.Pool, ttl_seconds: float) -> None:
    await pool.execute(SQL["purge"], float(ttl_seconds))
